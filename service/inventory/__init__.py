"""The shop's stock in Redis: the catalog, snapshots, and the atomic cart changes."""

from service.inventory.address_holds import TooManyHolds
from service.inventory.catalog import Book, Catalog, CatalogError
from service.inventory.replication import NotConfirmed, Promotions, ReplicaConfirm
from service.inventory.snapshot import CartResult, Snapshot, SoldOut, StockBelowHolds, UnknownSku
from service.inventory.store import InventoryStore

__all__ = ["Book", "CartResult", "Catalog", "CatalogError", "InventoryStore", "NotConfirmed",
           "Promotions", "ReplicaConfirm", "Snapshot", "SoldOut", "StockBelowHolds",
           "TooManyHolds", "UnknownSku"]
