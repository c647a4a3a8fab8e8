"""Federation with organisations' own OpenID Connect providers (issue 5)."""
