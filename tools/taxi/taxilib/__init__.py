"""taxilib: the taxi pipeline's shared modules (trips, geohash, KPL aggregation, the tools)."""
