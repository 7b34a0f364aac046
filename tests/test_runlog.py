"""Progress display: a bar on a terminal, timestamped log lines otherwise."""

from __future__ import annotations

import io
import logging

from ada_core.engine.runlog import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_and_no_epoch_records(caplog):
    stream = Terminal()
    with caplog.at_level(logging.DEBUG, logger="ada_core.engine.runlog"):
        bar = Progress(3, "gradcam", quiet=False, stream=stream)
        for _ in range(3):
            bar.update(cycle=1, loss=0.5, dsc=70.0)
        bar.note("cycle 1 done")
        bar.close()
    drawn = stream.getvalue()
    assert "gradcam" in drawn and "3/3" in drawn and "\r" in drawn  # tqdm redraws in place
    assert [r.getMessage() for r in caplog.records] == ["gradcam: cycle 1 done"]


def test_no_terminal_gets_throttled_timestamped_records_and_no_bar(caplog):
    stream = io.StringIO()  # a pipe or a file: isatty() is False
    with caplog.at_level(logging.DEBUG, logger="ada_core.engine.runlog"):
        bar = Progress(4, "standard", quiet=False, stream=stream, interval=3600)
        for _ in range(4):
            bar.update(cycle=0, loss=0.25, dsc=12.5)
        bar.close()
    assert stream.getvalue() == ""
    info = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    # the first epoch and the last at INFO (the interval is not up in between), the rest DEBUG
    assert [m.split(" (")[0] for m in info] == ["standard: epoch 1/4 cycle 0 loss 0.25 dsc 12.5",
                                                "standard: epoch 4/4 cycle 0 loss 0.25 dsc 12.5"]
    assert "ETA" in info[0] and "ETA" not in info[1] and len(debug) == 2


def test_quiet_never_draws_a_bar_even_on_a_terminal(caplog):
    stream = Terminal()
    with caplog.at_level(logging.INFO, logger="ada_core.engine.runlog"):
        bar = Progress(1, "none", quiet=True, stream=stream)
        bar.update(loss=1.0)
        bar.close()
    assert stream.getvalue() == "" and len(caplog.records) == 1


def test_the_cli_logs_warnings_with_their_level(capsys):
    from ada_core.logs import configure, reset

    configure(verbose=0, quiet=True)
    try:
        logging.getLogger("ada_core.test").info("hidden")
        logging.getLogger("ada_core.test").warning("shown")
    finally:
        reset()
    err = capsys.readouterr().err
    assert "hidden" not in err and err.rstrip().endswith("WARNING: shown")
