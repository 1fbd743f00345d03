"""How every deeplab-video command line starts and ends.

A CLI module defines its flags in a `define_flags()` (so that importing it defines none and
CLIs can share flag names) and a `main(argv)`, and its entry point calls `define_flags()`
and then `entry_point.run(main)`. Then, whether it runs as a console script, as
`python -m <module>` or as `python <path>`:

  * Logs are single and quiet: Python logs go through absl's one handler (TensorFlow's
    own handler would print each of its lines a second time), and TensorFlow's Python
    INFO lines only show with --verbosity=1. (TensorFlow's C++ start-up log is quieted by
    the package itself, see deeplab_video/__init__.py.)
  * `--help` shows the docstring and the flags of the module that defines `main` (absl
    shows those of the `__main__` module, which for a console script is the generated
    wrapper), including the flags it adopts with `flags.adopt_module_key_flags`.
  * A user error (`USER_ERRORS`: a bad config, a missing, unreadable or corrupt file, a
    checkpoint that does not fit the model, an invalid value), a usage error or a flag
    error ends the run with one line on stderr, `error: <message>`, and exit status 1 (a
    usage error: its own status). The library's messages name the file. With
    --verbosity=1 or DEEPLAB_VIDEO_DEBUG=1 a user error shows its traceback instead.
"""

import functools
import logging as std_logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

from absl import app, flags, logging

import deeplab_video

# Errors that describe a mistake in the command line or its inputs rather than in the
# program. The library's own error classes (config.ConfigError, tfrecord.CorruptRecordError,
# video_io.VideoInputError, pretrained.CheckpointMismatchError, label_io.LabelFileError,
# converters.common.ConversionError, ...) all derive from ValueError, as do the validation
# errors that name a bad setting.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
# The first line of a TensorFlow error raised for a Python exception inside a tf.data
# function, e.g. "{{function_node ...}} CorruptRecordError: <message>".
_WRAPPED_ERROR = re.compile(r"(?:^|[\s}])([A-Za-z_]\w*): (.+)")


def debug_requested() -> bool:
    """Whether DEEPLAB_VIDEO_DEBUG asks for tracebacks and TensorFlow's full logs."""
    return os.environ.get(deeplab_video.DEBUG_ENV, "") not in ("", "0")


def _verbose() -> bool:
    return debug_requested() or logging.level_debug()


def run(main: Callable[[list[str]], Any]) -> None:
    """Runs `main` as a command line (see the module docstring); never returns.

    Args:
        main: the CLI's main function; it receives the arguments left after the flags
            (the program name first) and its module defines the CLI's flags.
    """
    logging.use_absl_handler()
    logging.get_absl_handler().addFilter(_quiet_tensorflow_info)
    std_logging.getLogger("tensorflow").handlers.clear()  # It propagates to absl's handler.
    app.run(
        functools.partial(_call_main, main),
        flags_parser=functools.partial(_parse_flags, main.__module__),
    )


def _parse_flags(module_name: str, argv: list[str]) -> list[str]:
    """absl's flag parsing, with --help for `module_name` and one-line flag errors."""
    _show_in_help(module_name)
    try:
        remaining = flags.FLAGS(argv)
    except flags.Error as error:
        _exit_with_error(f"{_one_line(str(error))} (see --help)", 1)
    return remaining


def _quiet_tensorflow_info(record: std_logging.LogRecord) -> bool:
    """Log filter: drops the INFO lines of TensorFlow's own modules unless --verbosity=1."""
    tensorflow = sys.modules.get("tensorflow")
    if record.levelno >= std_logging.WARNING or tensorflow is None or _verbose():
        return True
    return not record.pathname.startswith(os.path.dirname(tensorflow.__file__) + os.sep)


def _show_in_help(module_name: str) -> None:
    """Makes --help show the docstring and key flags of the module that defines main."""
    main_name = sys.argv[0]  # absl's name of the __main__ module
    if module_name == "__main__" or module_name not in sys.modules:
        return
    for flag in flags.FLAGS.get_key_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(main_name, flag)
    main_module = sys.modules["__main__"]
    if not main_module.__doc__:
        main_module.__doc__ = sys.modules[module_name].__doc__


def _call_main(main: Callable[[list[str]], Any], argv: list[str]) -> Any:
    """Calls main; a user or usage error becomes one line on stderr and an exit status."""
    try:
        return main(argv)
    except app.UsageError as error:
        _exit_with_error(f"{_one_line(str(error))} (see --help)", error.exitcode)
    except Exception as error:
        message = user_error_message(error)
        if message is None or _verbose():
            raise
        _exit_with_error(message, 1)


def user_error_message(error: BaseException) -> str | None:
    """The one-line message of a user error, or None for any other exception.

    Besides `USER_ERRORS`, a TensorFlow error that carries one of them out of a tf.data
    function (a corrupt record met by the input pipeline) counts.
    """
    if isinstance(error, USER_ERRORS):
        if isinstance(error, OSError) and error.filename is not None:
            return f"{error.strerror or error} ({error.filename})"
        return _one_line(str(error))
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is not None and isinstance(error, tensorflow.errors.OpError):
        first_line = error.message.strip().split("\n", 1)[0]
        match = _WRAPPED_ERROR.search(first_line)
        if match and match.group(1) in {cls.__name__ for cls in _user_error_classes()}:
            return _one_line(match.group(2))
    return None


def _user_error_classes() -> Iterator[type]:
    """USER_ERRORS and every subclass of them loaded so far."""
    pending = list(USER_ERRORS)
    while pending:
        cls = pending.pop()
        yield cls
        pending.extend(cls.__subclasses__())


def _one_line(message: str) -> str:
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


def _exit_with_error(message: str, status: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    sys.exit(status)
