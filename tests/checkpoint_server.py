"""A real HTTP server on 127.0.0.1 (ephemeral port, in a thread) serving the files of a
folder, for tests of checkpoints given as URLs; it counts the GET requests per path."""
import functools
import http.server
import socket
import threading
from collections import Counter


class _Handler(http.server.SimpleHTTPRequestHandler):

    def do_GET(self):
        self.server.gets[self.path] += 1
        super().do_GET()

    def log_message(self, *args):  # no access log on stderr
        pass


class CheckpointServer:
    """``with CheckpointServer(folder) as server: server.url('teacher.pth')``."""

    def __init__(self, root):
        handler = functools.partial(_Handler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
        self.httpd.gets = Counter()
        # shutdown() waits for the loop's next poll: 0.5 s by default, per server
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs=dict(
            poll_interval=0.02), daemon=True)
        self.thread.start()

    @property
    def gets(self):
        return self.httpd.gets

    def url(self, name):
        return f'http://127.0.0.1:{self.httpd.server_address[1]}/{name}'

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def refused_url(name='teacher.pth'):
    """A URL on a 127.0.0.1 port nobody listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return f'http://127.0.0.1:{port}/{name}'
