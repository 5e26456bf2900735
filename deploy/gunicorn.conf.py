"""gunicorn settings of pouch's gateway; `pouchd gateway` adds binds, workers and pid file."""

# Threads, not processes, serve requests: each holds a broker client from a
# pool, and long streams leave the worker (their connections are handed to
# the actors), so a handful of threads serve many clients. A connection takes
# a thread only once its request has arrived (pouch.gateway.worker).
worker_class = "pouch.gateway.worker.Worker"
# Open connections at most (idle, slow or served); beyond, a new one is closed at once.
worker_connections = 2000
# The Docker API socket is root's and the docker group's (pouchd serves it 0660).
umask = 0o117
# Requests such as `docker load` of a large archive take a while.
timeout = 600
graceful_timeout = 3
# A client has this long to send a request (its head, and its body up to 64 KiB)
# from connecting, or from the request's first byte on a kept-alive connection; a
# kept-alive connection idle this long is closed; each read of a larger body must
# bring data within it (README, "Gateway limits").
keepalive = 15
accesslog = None
errorlog = "-"
proc_name = "pouch-gateway"
# The app (and its ZeroMQ context) is built in the worker: a context must not cross
# a fork. (With one worker, the default, the worker is the whole process.)
preload_app = False
# pouchd supervises the gateway itself; gunicorn's control socket would sit in $HOME.
control_socket_disable = True
