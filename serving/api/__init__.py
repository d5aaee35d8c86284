"""Where a request enters: HTTP decoding, routes, error mapping, request ids."""
