"""Runs the tests' tool processes from a pre-imported parent: each run is a real process
(its own pid, argv, environment, working directory, exit status and signals), forked
from one server that has already imported torch, MMEngine, MMSeg and mmseg_dfss, so
it skips the seconds of interpreter start-up and imports a fresh ``python tool.py``
spends on that work.

A run falls back to a fresh interpreter (:func:`subprocess.run`) when the variables
it sets change what is decided at import time (:func:`needs_fresh_interpreter`).

    python tests/tool_server.py          # the server: requests on stdin, replies on stdout

Once its imports are done the server sends its environment as they left it (one
JSON line ``{"env": ...}``: OpenCV, for one, sets variables). A request is one JSON line ``{argv, env, cwd, out, err}`` (``argv[0]`` the script,
``out``/``err`` the files its stdout/stderr go to); the server forks, replies
``{"pid": PID}``, and ``{"returncode": RC}`` when the run has ended (``-N``: killed by
signal ``N``, as :mod:`subprocess` reports it).
"""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import tempfile
import threading

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# what every tool imports first: the plugin (which imports torch, MMEngine and MMSeg and
# registers its components, as each tool's own ``import mmseg_dfss`` does)
PRELOAD = ('mmseg_dfss', 'mmseg.apis')
# variables read while those modules are imported (thread pools, CPU kernels, hash
# seed, matplotlib's backend, ...): a run that sets one otherwise gets a fresh interpreter
IMPORT_TIME_PREFIXES = ('PYTHON', 'OMP_', 'MKL_', 'KMP_', 'OPENBLAS_', 'ATEN_', 'TORCH_',
                        'CUDA_', 'NVIDIA_', 'LD_', 'DNNL_', 'ONEDNN_', 'MPL', 'MMENGINE_',
                        'MMCV_', 'MMSEG_', 'DFSS_', 'CV_', 'OPENCV_')
RUN_TIME_VARIABLES = ('PYTHONPATH', 'TORCH_HOME')  # read by the run itself, not at import


def needs_fresh_interpreter(settings, server_env):
    """True when ``settings`` (the variables a run sets on top of the test process's
    environment) give a variable the pre-imported modules already read another value
    than the server's environment (after its imports) has, or a PYTHONPATH that does
    not start with this repository (the server imported mmseg_dfss from here).

    Only what a run sets is compared: the rest is the test process's environment,
    which differs from the server's by what libraries set on import (scikit-learn's
    ``KMP_DUPLICATE_LIB_OK``, OpenCV's ``LD_LIBRARY_PATH``), as a fresh interpreter's
    would by the same imports. A test that changes an import-time variable for a tool
    passes it in ``env``."""
    for key, value in settings.items():
        if key.startswith(IMPORT_TIME_PREFIXES) and key not in RUN_TIME_VARIABLES \
                and value != server_env.get(key):
            return True
    paths = settings.get('PYTHONPATH', server_env.get('PYTHONPATH', '')).split(os.pathsep)
    return osp.abspath(paths[0] or '.') != REPO


class ToolServer:
    """The test process's side: starts the server once, sends it runs."""

    def __init__(self, env):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, osp.abspath(__file__)], cwd=REPO,
                                     env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     bufsize=1)
        self.lock = threading.Lock()
        self.env = self._reply()['env']  # the server's, after its imports

    def run(self, argv, env, cwd, timeout):
        """``subprocess.run(argv, capture_output=True, text=True, timeout=...)`` with
        ``argv[0]`` a Python script, run by the server's interpreter."""
        with tempfile.TemporaryDirectory() as tmp, self.lock:
            out, err = osp.join(tmp, 'out'), osp.join(tmp, 'err')
            self.proc.stdin.write(json.dumps(dict(argv=[str(a) for a in argv], env=env,
                                                  cwd=str(cwd), out=out, err=err)) + '\n')
            pid = self._reply()['pid']
            fired = threading.Event()
            killer = threading.Timer(timeout, _kill, (pid, fired))
            killer.start()
            try:
                returncode = self._reply()['returncode']
            finally:
                killer.cancel()
            stdout, stderr = (open(p, errors='replace').read() for p in (out, err))
        args = [sys.executable, *argv]
        if fired.is_set():
            raise subprocess.TimeoutExpired(args, timeout, stdout, stderr)
        return subprocess.CompletedProcess(args, returncode, stdout, stderr)

    def _reply(self):
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            raise RuntimeError('tests/tool_server.py ended:\n'
                               + self.log.read().decode(errors='replace')[-4000:])
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        self.log.close()


def _kill(pid, fired):
    fired.set()
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:  # it ended meanwhile
        pass


def _child(request):
    """In the forked process: becomes ``python argv[0] argv[1:]`` in ``cwd`` with
    ``env``; returns its exit status."""
    import runpy
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY),
                            (1, request['out'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                            (2, request['err'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        new = os.open(path, flags, 0o644)
        os.dup2(new, fd)
        os.close(new)
    sys.stdin = open(os.devnull)
    os.chdir(request['cwd'])
    os.environ.clear()
    os.environ.update(request['env'])
    script = request['argv'][0]
    # as a fresh interpreter: the script's folder first, then PYTHONPATH, then the rest
    extra = [osp.abspath(p) for p in request['env'].get('PYTHONPATH', '').split(os.pathsep)
             if p]
    sys.path[:] = [osp.dirname(osp.abspath(script))] + extra + [
        p for p in sys.path[1:] if p not in extra]
    sys.argv = list(request['argv'])
    try:
        runpy.run_path(script, run_name='__main__')
    except SystemExit as e:
        if e.code is None:
            return 0
        if isinstance(e.code, int):
            return e.code
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        return 1
    return 0


def _exit(code):
    """Ends the forked run as an interpreter ends (non-daemon threads joined, atexit
    callbacks run, every open file flushed) but without tearing down the modules one
    by one, which takes seconds once torch is imported and changes nothing on disk."""
    import atexit
    import gc
    import io
    import threading
    threading._shutdown()
    atexit._run_exitfuncs()
    for obj in gc.get_objects():
        if issubclass(type(obj), io.IOBase):  # type(): no proxy's __class__ runs
            try:
                if not obj.closed:
                    obj.flush()
            except (OSError, ValueError):
                pass
    os._exit(code)


def serve():
    """The server: imports :data:`PRELOAD`, then forks one child per request."""
    import importlib
    replies = os.fdopen(os.dup(1), 'w', buffering=1)
    os.dup2(2, 1)  # what the imports print goes to the log, never into a reply
    for name in PRELOAD:
        importlib.import_module(name)
    replies.write(json.dumps(dict(env=dict(os.environ))) + '\n')
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            replies.close()
            return request
        replies.write(json.dumps(dict(pid=pid)) + '\n')
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps(dict(returncode=os.waitstatus_to_exitcode(status))) + '\n')
    return None


if __name__ == '__main__':
    request = serve()
    if request is not None:  # the forked child: run the tool, exit as it would
        _exit(_child(request))
