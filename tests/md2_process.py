"""Run the ``md2`` console script in a process of its own without paying torch's import at every run.

Starting ``md2`` imports torch and torchvision: about 6 s of CPU on the 2-core CI machine, more than most of the
tests' commands then take. A *zygote*, started once per test session, is a fresh interpreter (the console script's
own, with the console script's ``sys.path``) that imports :data:`PRELOADED` (torch and torchvision) and nothing
else (not md2, not typer, rich or OpenCV, which read the environment when imported), and then forks one process per
run. In that process the console script runs as ``__main__``, as the interpreter would run it: its own pid (which
can be killed, and whose children are its own), the run's environment and working directory, stdin on /dev/null,
stdout and stderr on pipes or /dev/null, an optional RLIMIT_FSIZE, its exit code or signal; md2 and everything else
it uses are imported in the run, after its environment is set; an uncaught exception prints its traceback and exits
1, and at the end the interpreter's shutdown (non-daemon threads, atexit handlers, flushing stdout and stderr) is
done. What a run does not repeat is importing the preloaded packages; whatever they printed while importing is
written to every run's stdout and stderr first, as a fresh process would print it. The interpreter's own start-up
settings (PYTHONUNBUFFERED, PYTHONIOENCODING, -X options) are the zygote's, taken from the test process's
environment, which no test changes for a single run.

``run(args, ...)`` is ``subprocess.run([md2, *args], capture_output=True, text=True, ...)``; ``popen(args, ...)``
is a ``subprocess.Popen``-like handle. The tests of the executable itself (tests/cli/test_app.py) start the real
``md2``, which is what a user runs.
"""

from __future__ import annotations

import json
import locale
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

MD2 = os.path.join(os.path.dirname(sys.executable), "md2")
"""The installed console script."""
PRELOADED = ("torch", "torchvision")
"""What the zygote imports once: about 6 of md2's 7 s start-up (the rest, about 0.7 s, is each run's own)."""
PIPE, DEVNULL = subprocess.PIPE, subprocess.DEVNULL


def _interpreter() -> str:
    """The console script's interpreter (its shebang), as the executable would start it."""
    with open(MD2, "rb") as script:
        first = script.readline().decode(errors="replace").strip()
    if first.startswith("#!") and len(first.split()) == 1 and os.access(first[2:], os.X_OK):
        return first[2:]
    return sys.executable


def _translate(data: bytes) -> str:
    """Bytes read from a pipe as ``subprocess`` returns them with ``text=True`` (universal newlines)."""
    text = data.decode(locale.getpreferredencoding(False))
    return text.replace("\r\n", "\n").replace("\r", "\n")


class _Zygote:
    """The client end: starts the zygote and asks it to fork runs and report how they ended."""

    def __init__(self, folder: Path) -> None:
        self.lock = threading.Lock()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        folder.mkdir(parents=True, exist_ok=True)
        self.noise = (folder / "import_stdout", folder / "import_stderr")
        with open(self.noise[0], "wb") as out, open(self.noise[1], "wb") as err:
            self.process = subprocess.Popen(
                [_interpreter(), __file__, str(theirs.fileno()), *map(str, self.noise)], pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=dict(os.environ))
        theirs.close()
        self.socket = ours
        ready = self.socket.recv(64)
        if ready != b"ready":
            self.process.wait(timeout=60)
            raise RuntimeError(f"the md2 zygote did not start: {self.noise[1].read_text(errors='replace')}")

    def request(self, message: dict, fds: list[int] = ()) -> dict:
        with self.lock:
            if fds:
                socket.send_fds(self.socket, [json.dumps(message).encode()], list(fds))
            else:
                self.socket.send(json.dumps(message).encode())
            answer = self.socket.recv(1 << 16)
        if not answer:
            raise RuntimeError(f"the md2 zygote stopped: {self.noise[1].read_text(errors='replace')}")
        reply = json.loads(answer)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply

    def close(self) -> None:
        """Stop the zygote (it ends when its socket closes) and remove its folder."""
        import shutil

        self.socket.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.noise[0].parent, ignore_errors=True)


_zygote: _Zygote | None = None
_zygote_lock = threading.Lock()


def _the_zygote() -> _Zygote:
    global _zygote
    with _zygote_lock:
        if _zygote is None:
            import atexit
            import tempfile

            _zygote = _Zygote(Path(tempfile.mkdtemp(prefix="md2_zygote_")))
            atexit.register(_zygote.close)
        return _zygote


class Md2Process:
    """A forked md2 run, used like ``subprocess.Popen`` (pid, poll, wait, communicate, kill, returncode)."""

    def __init__(self, args: list[str], *, stdout=None, stderr=None, text: bool = False, cwd=None,
                 env: dict[str, str] | None = None, start_new_session: bool = False,
                 file_size_limit: int | None = None) -> None:
        self.args = [MD2, *map(str, args)]
        self.returncode: int | None = None
        self.text = text
        self.stdout = self.stderr = None
        given, ours = [], []  # the run's stdin, stdout, stderr; the read ends we keep
        try:
            given.append(os.open(os.devnull, os.O_RDONLY))
            for choice in (stdout, stderr):
                if choice == PIPE:
                    read, write = os.pipe()
                    ours.append(read)
                    given.append(write)
                elif choice in (None, DEVNULL):
                    # None: like Popen's inherited stdout/stderr, which under pytest would be its capture;
                    # /dev/null keeps the run's output out of the test's.
                    given.append(os.open(os.devnull, os.O_WRONLY))
                    ours.append(None)
                else:
                    raise ValueError(f"stdout/stderr must be PIPE, DEVNULL or None, not {choice!r}")
            self.pid = _the_zygote().request({
                "op": "run", "args": self.args[1:], "cwd": str(cwd if cwd is not None else os.getcwd()),
                "env": dict(os.environ if env is None else env), "new_session": start_new_session,
                "file_size_limit": file_size_limit}, given)["pid"]
        except BaseException:
            for fd in ours:
                if fd is not None:
                    os.close(fd)
            raise
        finally:
            for fd in given:
                os.close(fd)
        self.stdout, self.stderr = (os.fdopen(fd, "rb") if fd is not None else None for fd in ours)

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = _the_zygote().request({"op": "poll", "pid": self.pid})["returncode"]
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.001
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        return self.returncode

    def send_signal(self, signal_number: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal_number)

    def kill(self) -> None:
        import signal

        self.send_signal(signal.SIGKILL)

    def communicate(self, timeout: float | None = None) -> tuple:
        """Read stdout and stderr to their ends and wait for the process (as Popen.communicate)."""
        chunks: dict[str, list[bytes]] = {}

        def drain(name: str, stream) -> None:
            chunks[name] = [stream.read()]
            stream.close()

        readers = [threading.Thread(target=drain, args=(name, stream), daemon=True)
                   for name, stream in (("stdout", self.stdout), ("stderr", self.stderr)) if stream is not None]
        for reader in readers:
            reader.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        for reader in readers:
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        out = [b"".join(chunks[name]) if name in chunks else None for name in ("stdout", "stderr")]
        return tuple(_translate(data) if self.text and data is not None else data for data in out)


def popen(args, **options) -> Md2Process:
    """``subprocess.Popen([md2, *args], ...)`` through the zygote (see the module docstring)."""
    return Md2Process(list(args), **options)


def run(args, *, cwd=None, env: dict[str, str] | None = None, timeout: float | None = None,
        file_size_limit: int | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run([md2, *args], capture_output=True, text=True, ...)`` through the zygote; a run past
    ``timeout`` is killed and TimeoutExpired raised, as subprocess.run does."""
    process = Md2Process(list(args), stdout=PIPE, stderr=PIPE, text=True, cwd=cwd, env=env,
                         file_size_limit=file_size_limit)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


# -- the zygote ---------------------------------------------------------------------------------------------------
def _exit_code(exit_: SystemExit) -> int:
    """The interpreter's exit status for an uncaught SystemExit (None: 0; an int; anything else printed, 1)."""
    code = exit_.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _script_traceback(traceback_):
    """The traceback from the console script's frame on (the frames running it here are not the program's)."""
    while traceback_ is not None and traceback_.tb_frame.f_code.co_filename != MD2:
        traceback_ = traceback_.tb_next
    return traceback_


def _run_script(args: list[str]) -> int:
    """Run the console script as ``python MD2 ARGS`` would, up to the interpreter's shutdown; its exit status."""
    import atexit
    import runpy
    import signal

    sys.argv = [MD2, *args]
    try:
        runpy.run_path(MD2, run_name="__main__")
        code = 0
    except SystemExit as exit_:
        code = _exit_code(exit_)
    except BaseException as error:  # noqa: BLE001 - what the interpreter does with an uncaught exception
        error.__traceback__ = _script_traceback(error.__traceback__)
        sys.excepthook(type(error), error, error.__traceback__)
        if isinstance(error, KeyboardInterrupt):  # the interpreter ends by SIGINT then
            sys.stdout.flush()
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        code = 1
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()  # wait for non-daemon threads
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = 120
    return code


def _child(connection: socket.socket, fds: list[int], request: dict, noise: tuple[bytes, bytes]) -> None:
    """In the forked process: become the run, run the console script and exit with its status."""
    code = 1
    try:
        connection.close()
        if request["new_session"]:
            os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        import signal

        # Ctrl-C raises KeyboardInterrupt, as in a python started from a terminal, even when the tests run with
        # SIGINT ignored (a background job of a script: Python then keeps SIG_IGN, and so would the child)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(request["env"])
        if request["file_size_limit"] is not None:
            import resource

            limit = request["file_size_limit"]
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        for fd, data in zip((1, 2), noise):
            if data:
                os.write(fd, data)
        code = _run_script(request["args"])
    except BaseException:  # noqa: BLE001 - a failure to set the run up
        import traceback

        os.write(2, traceback.format_exc().encode())
    finally:
        os._exit(code)


def _zygote_main(connection_fd: int, stdout_file: str, stderr_file: str) -> None:
    import gc
    import importlib

    connection = socket.socket(fileno=connection_fd)
    for name in PRELOADED:
        importlib.import_module(name)
    # The preloaded modules' objects live as long as any run: keep them out of the runs' garbage collections
    # (which would otherwise walk them all) and their pages shared (gc.freeze, made for forking servers).
    gc.collect()
    gc.freeze()
    sys.stdout.flush()
    sys.stderr.flush()
    noise = (Path(stdout_file).read_bytes(), Path(stderr_file).read_bytes())
    connection.send(b"ready")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
        except OSError:
            break
        if not message:
            break
        request = json.loads(message)
        try:
            if request["op"] == "run":
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(connection, fds, request, noise)
                reply = {"pid": pid}
            elif request["op"] == "poll":
                done, status = os.waitpid(request["pid"], os.WNOHANG)
                reply = {"returncode": os.waitstatus_to_exitcode(status) if done else None}
            else:
                reply = {"error": f"unknown request {request['op']!r}"}
        except OSError as error:
            reply = {"error": f"{type(error).__name__}: {error}"}
        finally:
            for fd in fds:
                os.close(fd)
        connection.send(json.dumps(reply).encode())


if __name__ == "__main__":
    # Started as `python tests/md2_process.py FD STDOUT STDERR`: the console script's sys.path, not tests/'s.
    sys.path[0] = os.path.dirname(MD2)
    _zygote_main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
