"""The OpenID Connect provider: relying applications sign practitioners in here.

Built on Authlib's authorization server (grants and client authentication),
with storage, keys, claims, DPoP and pushed requests of our own.
"""
