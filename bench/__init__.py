"""Tollgate's benchmark (`make bench`): a fake upstream, a load generator and the gateway under gunicorn,
direct-to-upstream vs through the gateway. See bench/README.md."""
