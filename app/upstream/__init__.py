"""Outbound HTTP: the pooled client the proxy, the admin's Test button and webhooks can share.

It knows nothing of providers, formats or the proxy: a URL, headers and a body go out; a reply,
whole or as a stream of raw bytes, comes back.
"""
