"""The embedding progress bar of the catalog commands (tqdm on the command's stderr)."""

from django.core.management.base import OutputWrapper
from tqdm import tqdm


class _UnterminatedWriter:
    """Pass tqdm's carriage-return updates through an OutputWrapper, which would otherwise
    end every write with a newline."""

    def __init__(self, output: OutputWrapper) -> None:
        self._output = output

    def write(self, text: str) -> None:
        self._output.write(text, style_func=lambda unstyled: unstyled, ending="")

    def flush(self) -> None:
        self._output.flush()

    def isatty(self) -> bool:
        # tqdm hides the bar when this is False, so logs of non-interactive runs stay clean.
        return self._output.isatty()


class EmbeddingProgressBar:
    """A ``ProgressCallback`` that draws a bar once the total is known; call ``close()``."""

    def __init__(self, output: OutputWrapper) -> None:
        self._output = output
        self._bar: tqdm | None = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = tqdm(
                total=total,
                desc="Embedding",
                unit="product",
                file=_UnterminatedWriter(self._output),
                disable=None if total else True,
            )
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
