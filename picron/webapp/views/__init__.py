"""Request handlers ``(ctx, req, **params) -> Response``, one module per part of the site."""
