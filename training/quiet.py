"""Quiet TensorFlow by default: the training output should be progress and results, not notices.

Three sources of noise, three measures:
- TensorFlow's C++ INFO/WARNING lines: ``TF_CPP_MIN_LOG_LEVEL=2``, which only works when set
  before TensorFlow is imported;
- the oneDNN notice (and absl's "before InitializeLog" line), printed while TensorFlow's
  libraries load whatever that variable says: native stderr is captured during the import and
  replayed only if the import fails;
- INFO lines from tf2onnx and onnxruntime's quantizer, which log through Python's ``logging``
  (the quantizer through the root logger): third-party loggers are set to ERROR, while this
  package's own loggers stay at INFO.
``verbose=True`` leaves all three alone.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(verbose: bool) -> None:
    """Logging for the training commands; call before anything imports TensorFlow."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.ERROR, format=LOG_FORMAT)
    logging.getLogger("training").setLevel(logging.INFO)
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)


@contextmanager
def native_stderr_captured() -> Iterator[None]:
    """Redirect file descriptor 2 (where C++ libraries write) to a temporary file.

    What was written is discarded on success and copied back to stderr if the block raises,
    so a failed import still explains itself.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                os.write(2, sink.read())


def import_tensorflow(verbose: bool) -> None:
    """Import TensorFlow (and Keras) now, quietly unless ``verbose``; no-op if already done."""
    if "tensorflow" in sys.modules:
        return
    if verbose:
        importlib.import_module("keras")
        return
    with native_stderr_captured():
        importlib.import_module("keras")
