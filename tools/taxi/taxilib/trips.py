"""Taxi trips: the synthetic generator, the NYC TLC yellow-taxi CSV reader, and the JSON
record that travels through the stream.

A trip is a dict with the TLC's fields under short names:

    id                 unique within one replay ("s<seed>-<n>" or "<file>:<line>")
    pickup, dropoff    event times, seconds since the epoch (TLC times are NYC local time;
                       they are taken as they are written, without a zone)
    plat, plon         pickup coordinates, or None when the source has location ids
    dlat, dlon         drop-off coordinates, or None
    pu, do             TLC taxi-zone ids, or None when the source has coordinates
    passengers, distance (miles), fare, total (dollars)

The generator is a pure function of its seed: the same seed gives the same trips in the same
order (pickup time non-decreasing), so a test can compute the expected windows from it."""

import calendar
import csv
import json
import math
import random
import time

# Places: (name, lat, lon, spread in degrees)
MIDTOWN = ("Midtown", 40.7549, -73.9840, 0.0075)
FIDI = ("Financial District", 40.7075, -74.0113, 0.0035)
JFK = ("JFK", 40.6413, -73.7781, 0.0030)
LGA = ("LaGuardia", 40.7769, -73.8740, 0.0020)
UPTOWN = ("Upper Manhattan", 40.7870, -73.9650, 0.0150)
BROOKLYN = ("Brooklyn", 40.6890, -73.9700, 0.0150)
PLACES = (MIDTOWN, FIDI, JFK, LGA, UPTOWN, BROOKLYN)

# Airports as drop-off areas: centre and radius in degrees (about 2.5 and 1.6 km).
AIRPORTS = {"JFK": (40.6413, -73.7781, 0.025), "LGA": (40.7769, -73.8740, 0.015)}
AIRPORT_ZONES = {132: "JFK", 138: "LGA"}

# Approximate centroids of the busiest TLC taxi zones, for CSVs with location ids. Trips from
# other zones are counted under the cell "zone-<id>".
ZONE_CENTROIDS = {
    4: (40.7236, -73.9770), 13: (40.7115, -74.0160), 43: (40.7829, -73.9654), 48: (40.7620, -73.9930),
    50: (40.7650, -73.9960), 68: (40.7480, -74.0010), 79: (40.7270, -73.9860), 87: (40.7075, -74.0090),
    88: (40.7040, -74.0130), 90: (40.7420, -73.9950), 100: (40.7530, -73.9890), 107: (40.7370, -73.9830),
    113: (40.7330, -73.9960), 114: (40.7280, -74.0000), 125: (40.7270, -74.0070), 132: (40.6413, -73.7781),
    137: (40.7410, -73.9760), 138: (40.7769, -73.8740), 140: (40.7650, -73.9550), 141: (40.7660, -73.9590),
    142: (40.7740, -73.9830), 143: (40.7780, -73.9870), 144: (40.7210, -73.9970), 148: (40.7190, -73.9880),
    151: (40.7970, -73.9680), 158: (40.7390, -74.0080), 161: (40.7580, -73.9780), 162: (40.7560, -73.9710),
    163: (40.7640, -73.9780), 164: (40.7480, -73.9850), 166: (40.8090, -73.9610), 170: (40.7480, -73.9780),
    186: (40.7500, -73.9920), 209: (40.7070, -74.0040), 211: (40.7230, -74.0030), 224: (40.7310, -73.9760),
    229: (40.7570, -73.9650), 230: (40.7590, -73.9860), 231: (40.7170, -74.0090), 232: (40.7140, -73.9830),
    233: (40.7500, -73.9710), 234: (40.7400, -73.9900), 236: (40.7800, -73.9570), 237: (40.7690, -73.9650),
    238: (40.7910, -73.9730), 239: (40.7830, -73.9790), 246: (40.7530, -74.0030), 249: (40.7340, -74.0030),
    261: (40.7090, -74.0130), 262: (40.7770, -73.9460), 263: (40.7770, -73.9510),
}

# Relative pickups per hour of day (NYC: quiet before dawn, evening peak).
HOURLY = (0.55, 0.40, 0.30, 0.22, 0.20, 0.25, 0.45, 0.75, 0.90, 0.90, 0.85, 0.88,
          0.92, 0.92, 0.95, 0.95, 0.90, 1.00, 1.00, 0.98, 0.95, 0.92, 0.85, 0.70)


def place_weights(hour):
    """Where pickups happen at this hour: weights for PLACES."""
    morning = 1.0 if 7 <= hour < 10 else 0.0
    evening = 1.0 if 16 <= hour < 20 else 0.0
    airport = 1.6 if 14 <= hour < 23 else 0.8
    return (
        4.0 + 1.5 * evening,  # Midtown
        1.0 + 2.0 * morning + 1.5 * evening,  # Financial District
        airport,  # JFK
        airport * 0.8,  # LaGuardia
        1.5,  # Upper Manhattan
        1.0,  # Brooklyn
    )


def parse_time(text):
    """'2015-01-15 07:00:00' or '2015-01-15T07:00:00(Z)' -> seconds, taken as written."""
    t = text.strip().rstrip("Z").replace("T", " ")
    if "." in t:
        t = t.split(".")[0]
    return calendar.timegm(time.strptime(t, "%Y-%m-%d %H:%M:%S"))


def format_time(ts):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _miles(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 3958.8 * 2 * math.asin(math.sqrt(a))


def _point(rng, place):
    _, lat, lon, spread = place
    return round(rng.gauss(lat, spread), 6), round(rng.gauss(lon, spread * 1.3), 6)


def synthetic(seed, start="2015-01-15 07:00:00", count=None, per_minute=120):
    """Trips in pickup order from a seeded generator; count None means without end.

    Pickups follow a Poisson process whose rate is per_minute scaled by the hour of day;
    they cluster around Midtown, the Financial District, JFK and LaGuardia with weights that
    depend on the hour. Trips to the airports take the highway (faster per mile, slower in
    the rush hours); JFK to or from Manhattan is the flat fare."""
    rng = random.Random(seed)
    t = float(parse_time(start) if isinstance(start, str) else start)
    n = 0
    while count is None or n < count:
        hour = time.gmtime(int(t)).tm_hour
        rate = per_minute * HOURLY[hour] / 60.0  # per second
        t += rng.expovariate(rate)
        hour = time.gmtime(int(t)).tm_hour
        src = rng.choices(PLACES, weights=place_weights(hour))[0]
        plat, plon = _point(rng, src)
        u = rng.random()
        if src in (JFK, LGA):
            dst = rng.choices((MIDTOWN, FIDI, UPTOWN, BROOKLYN), weights=(5, 2, 2, 2))[0]
        elif u < 0.07:
            dst = JFK
        elif u < 0.13:
            dst = LGA
        else:
            dst = rng.choices((MIDTOWN, FIDI, UPTOWN, BROOKLYN), weights=(4, 1.5, 2.5, 1.5))[0]
        dlat, dlon = _point(rng, dst)
        miles = max(0.3, _miles(plat, plon, dlat, dlon) * 1.25)
        rush = 7 <= hour < 10 or 16 <= hour < 20
        highway = dst in (JFK, LGA) or src in (JFK, LGA)
        mph = (20.0 if rush else 26.0) if highway else (8.5 if rush else 12.0)
        seconds = max(120, int(miles / mph * 3600 * rng.lognormvariate(0, 0.18)))
        if {src, dst} & {JFK} and {src, dst} & {MIDTOWN, FIDI, UPTOWN}:
            fare = 70.0
        else:
            fare = round(3.0 + 2.5 * miles + 0.35 * seconds / 60, 2)
        tip = round(fare * rng.choice((0, 0.15, 0.18, 0.2, 0.25)), 2)
        pickup = int(t)
        yield {
            "id": f"s{seed}-{n}",
            "pickup": pickup,
            "dropoff": pickup + seconds,
            "plat": plat,
            "plon": plon,
            "dlat": dlat,
            "dlon": dlon,
            "pu": None,
            "do": None,
            "passengers": rng.choices((1, 2, 3, 4, 5, 6), weights=(70, 14, 5, 3, 5, 3))[0],
            "distance": round(miles, 2),
            "fare": fare,
            "total": round(fare + tip + 0.5 + 0.3, 2),
        }
        n += 1


# CSV columns of the TLC yellow-taxi files across the years (lower case): our name -> aliases.
_COLUMNS = {
    "pickup": ("tpep_pickup_datetime", "pickup_datetime", "trip_pickup_datetime"),
    "dropoff": ("tpep_dropoff_datetime", "dropoff_datetime", "trip_dropoff_datetime"),
    "plat": ("pickup_latitude", "start_lat"),
    "plon": ("pickup_longitude", "start_lon"),
    "dlat": ("dropoff_latitude", "end_lat"),
    "dlon": ("dropoff_longitude", "end_lon"),
    "pu": ("pulocationid",),
    "do": ("dolocationid",),
    "passengers": ("passenger_count",),
    "distance": ("trip_distance",),
    "fare": ("fare_amount", "fare_amt"),
    "total": ("total_amount", "total_amt"),
}


def csv_columns(header):
    """Map our field names to column indexes; the header decides coordinates or zone ids.
    Raises ValueError when it has neither or lacks the times."""
    lower = [h.strip().lower() for h in header]
    cols = {}
    for name, aliases in _COLUMNS.items():
        for a in aliases:
            if a in lower:
                cols[name] = lower.index(a)
                break
    if "pickup" not in cols or "dropoff" not in cols:
        raise ValueError("not a TLC trip file: no pickup/dropoff datetime columns")
    coords = all(k in cols for k in ("plat", "plon", "dlat", "dlon"))
    zones = "pu" in cols and "do" in cols
    if not coords and not zones:
        raise ValueError("the header has neither pickup/dropoff coordinates nor PULocationID/DOLocationID")
    return cols, "coordinates" if coords else "zones"


def csv_trips(path, skipped=None):
    """Trips from a TLC yellow-taxi CSV. Rows that do not parse, or with zero coordinates, are
    skipped and counted in skipped['rows'] when skipped is a dict."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        cols, kind = csv_columns(next(reader))

        def num(row, name, conv=float):
            i = cols.get(name)
            if i is None or i >= len(row) or not row[i].strip():
                return None
            return conv(float(row[i]))

        for line, row in enumerate(reader, start=2):
            try:
                trip = {
                    "id": f"csv:{line}",
                    "pickup": parse_time(row[cols["pickup"]]),
                    "dropoff": parse_time(row[cols["dropoff"]]),
                    "plat": None, "plon": None, "dlat": None, "dlon": None, "pu": None, "do": None,
                    "passengers": num(row, "passengers", int),
                    "distance": num(row, "distance"),
                    "fare": num(row, "fare"),
                    "total": num(row, "total"),
                }
                if kind == "coordinates":
                    for k in ("plat", "plon", "dlat", "dlon"):
                        trip[k] = num(row, k)
                    if not trip["plat"] or not trip["plon"]:
                        raise ValueError("no pickup coordinates")
                else:
                    trip["pu"], trip["do"] = num(row, "pu", int), num(row, "do", int)
            except (ValueError, IndexError):
                if skipped is not None:
                    skipped["rows"] = skipped.get("rows", 0) + 1
                continue
            yield trip


def encode(trip):
    """The record's bytes: compact JSON."""
    return json.dumps(trip, separators=(",", ":")).encode()


def decode(data):
    """A trip from a record's bytes; ValueError when it is not one."""
    t = json.loads(data)
    if not isinstance(t, dict) or not isinstance(t.get("pickup"), int) or not isinstance(t.get("dropoff"), int):
        raise ValueError("not a trip record")
    return t


def pickup_point(trip):
    """(lat, lon) of the pickup, from coordinates or the zone's centroid; None if unknown."""
    if trip.get("plat") is not None and trip.get("plon") is not None:
        return trip["plat"], trip["plon"]
    return ZONE_CENTROIDS.get(trip.get("pu"))


def cell(trip, precision, geohash_encode):
    """The pickup cell: a geohash, or 'zone-<id>' for a zone without a known centroid."""
    p = pickup_point(trip)
    if p is None:
        return f"zone-{trip.get('pu')}"
    try:
        return geohash_encode(p[0], p[1], precision)
    except ValueError:
        return "invalid"


def airport(trip):
    """'JFK' or 'LGA' when the trip ends at that airport, else None."""
    if trip.get("do") in AIRPORT_ZONES:
        return AIRPORT_ZONES[trip["do"]]
    lat, lon = trip.get("dlat"), trip.get("dlon")
    if lat is None or lon is None:
        return None
    for name, (alat, alon, r) in AIRPORTS.items():
        if (lat - alat) ** 2 + (lon - alon) ** 2 <= r * r:
            return name
    return None
