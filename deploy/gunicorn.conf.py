"""gunicorn settings of pouch's gateway; `pouchd gateway` adds binds, workers and pid file."""

# Threads, not processes, serve requests: each holds a broker client from a
# pool, and long streams leave the worker (their connections are handed to
# the actors), so a handful of threads serve many clients.
worker_class = "gthread"
# The Docker API socket is root's and the docker group's (pouchd serves it 0660).
umask = 0o117
# Requests such as `docker load` of a large archive take a while.
timeout = 600
graceful_timeout = 3
keepalive = 30
accesslog = None
errorlog = "-"
proc_name = "pouch-gateway"
# The app (and its ZeroMQ context) is built in the worker: a context must not cross
# a fork. (With one worker, the default, the worker is the whole process.)
preload_app = False
# pouchd supervises the gateway itself; gunicorn's control socket would sit in $HOME.
control_socket_disable = True
