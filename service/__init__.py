"""Burt's Books live: Introduction to Tornado, chapter 5, as a horizontally scaled service."""
