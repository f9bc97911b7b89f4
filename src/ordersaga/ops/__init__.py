"""Operating sagas: find them, see their timeline, repair them (``ordersaga sagas ...``).

``access``  opening a saga log for inspection (read-only) or repair, from a data dir or a URL
``views``   what an operator sees of a saga: a list row, the whole timeline (card data masked)
``repair``  retry, resolve, cancel: each one change plus its operator action, atomically
``render``  the tables and timelines for people (rich)
``workers`` the workers of a shared log and their liveness

It sits above the order domain (to mask card data and to know the order saga's steps) and below
the cluster (whose order API serves the same views).
"""
