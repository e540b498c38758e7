"""A payment from request to money moved: the request and its decision, state changes, charges, the sweep."""
