"""The order domain: model, stream parsing, world file, the order saga."""
