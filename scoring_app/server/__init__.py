"""The server: gunicorn's side. ``worker`` (gevent's worker with gevent's HTTP
server and an idle timeout) and ``drain`` (the master's SIGTERM: drain, then
stop). Settings and hooks are in ``scoring_app/gunicorn.conf.py``."""
