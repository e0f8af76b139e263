"""The helper's control API: the shared schema, the server and a small client library."""
