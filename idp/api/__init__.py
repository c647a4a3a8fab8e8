"""The JSON admin API under /api/v1: the admin console's operations for
programs, authorised by this service's own OAuth access tokens and described
by the OpenAPI document it serves."""
