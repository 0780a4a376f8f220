"""Coverage-guided fuzzing of a message's whole way through the engine (checklist item 16).

`python3 -m tests.fuzz.scan --workdir DIR [--runs N] [--seeds N]`

Each input is parsed, tokenized both ways (the C core's keys must equal the hashes of
the Python tokens), sampled both ways for the byte model (every reading's C sample must
equal Python's), learned from by the byte model's C training path as `train` runs it
(`sample_steps`, then `sample_adds` giving the steps back: the steps must be numpy's,
and the weights must come back to where they were), and scanned with the built-in rules
(and, with `--rules PATH`, those rule files too: `--rules /usr/share/spamassassin` drives
SpamAssassin's evals, link canonicaliser, Received parser and body renderer) and a
Bayes database trained on folds 1-4 of the SpamAssassin corpus. An input that
raises, or whose keys, sample or training steps differ, or that takes more than
`--slow` seconds of CPU, is written to DIR/findings with what it did, and fuzzing goes
on. The seeds are corpus messages, read from ../shared at run time.

Not run by pytest (atheris instruments every spamkit module and an hour buys ~10^6
inputs); what it finds becomes an ordinary test.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
import traceback
from pathlib import Path

import atheris
import numpy as np

with atheris.instrument_imports(include=["spamkit"]):
    from spamkit import bytemodel
    from spamkit.bytemodel import META_NAME, READINGS, ByteModel, byte_sample, grams, python_byte_sample, read_model
    from spamkit.message import parse_message
    from spamkit.tokenizer import hash_tokens
    from tests.fuzz.engine import trained_scanner

from corpora.spamassassin import SpamAssassinCorpus


class Harness:
    def __init__(self, workdir: Path, slow_seconds: float, rule_paths: tuple[str, ...] = ()) -> None:
        self.findings = workdir / "findings"
        self.findings.mkdir(parents=True, exist_ok=True)
        self.slow_seconds = slow_seconds
        self.scanner = trained_scanner(workdir, rule_paths)
        self.byte_model = read_model(self.scanner.store.meta_value(META_NAME)) if self.scanner.store else None
        self.executions = 0
        self.slowest = 0.0
        self.started = time.monotonic()

    def run_one(self, data: bytes) -> None:
        self.executions += 1
        started = time.process_time()
        try:
            parsed = parse_message(data, self.scanner.analyzer.limits)
            tokenizer = self.scanner.analyzer.tokenizer
            keys = tokenizer.tokenize_keys(parsed)
            expected = set(hash_tokens(tokenizer.tokenize(parsed)))
            if keys != expected:
                self._record("keys", data, f"C keys {len(keys)}, Python keys {len(expected)}\n")
            for name, reading in READINGS.items():  # the byte model's C sample against Python's
                if byte_sample(data, reading) != python_byte_sample(data, reading):
                    self._record("sample", data, f"C and Python {name} samples differ\n")
            self._check_training(data)
            verdict = self.scanner.scan(data, parsed=parsed)
            verdict.rewrite(data)
        except Exception:  # noqa: BLE001 - every exception is a finding
            self._record("crash", data, traceback.format_exc())
        spent = time.process_time() - started
        self.slowest = max(self.slowest, spent)
        if spent > self.slow_seconds:
            self._record("slow", data, f"{spent:.2f} s of CPU (instrumented)\n")
        if self.executions % 10_000 == 0:
            rate = self.executions / (time.monotonic() - self.started)
            print(f"#{self.executions}: {rate:.0f} inputs/s, slowest {self.slowest:.3f} s",
                  file=sys.stderr, flush=True)

    def _check_training(self, data: bytes) -> None:
        """The input's sample learned twice (as spam, then as ham) by the C path `train`'s
        copies take, from the trained model's weights, against `ByteModel.learn` in numpy;
        then the steps given back through `sample_adds` (as `forget` does)."""
        fast, model = bytemodel._fast, self.byte_model
        if fast is None or model is None:
            return
        sample = byte_sample(data, model.reading)
        if not sample:
            return
        weights = model.weights.copy()
        steps = np.frombuffer(fast.sample_steps([sample, sample], b"\x01\x00", weights,
                                                bytemodel.RATE, bytemodel.THICK), dtype=np.float32)
        slow = ByteModel(model.weights.copy(), model_format=model.format)
        expected = [slow.learn(grams(sample), True), slow.learn(grams(sample), False)]
        if steps.tolist() != expected or not np.allclose(weights, slow.weights, rtol=0, atol=1e-6):
            self._record("train", data, f"C steps {steps.tolist()}, numpy steps {expected}\n")
        fast.sample_adds([sample, sample], (-steps).tobytes(), weights)
        if not np.allclose(weights, model.weights, rtol=0, atol=1e-6):
            self._record("train", data, "the weights did not come back after sample_adds\n")

    def _record(self, kind: str, data: bytes, why: str) -> None:
        name = f"{kind}-{hashlib.sha1(data).hexdigest()[:16]}"
        (self.findings / name).write_bytes(data)
        (self.findings / f"{name}.txt").write_text(why)
        print(f"finding: {name}: {why.strip().splitlines()[-1]}", file=sys.stderr, flush=True)


# what MIME, HTML and the header decoders turn on, for the fuzzer's mutations
_DICTIONARY = ["\nContent-Type: multipart/mixed; boundary=", "\n--", "--\n", "message/rfc822",
               "Content-Transfer-Encoding: base64", "Content-Transfer-Encoding: quoted-printable",
               "Content-Disposition: attachment; filename=", "charset=", "=?utf-8?B?", "=?iso-8859-1?Q?",
               "?=", "begin 644 ", "<html>", "<a href=\"http://", "<img alt=", "<style>", "display:none",
               "<!--", "-->", "&#", "&nbsp;", "Received: from ", " by ", "Message-ID: <", "Subject: ",
               "From: ", "To: ", "Reply-To: ", "http://", "mailto:", "\r\n", "\n\n", "\x00"]


def write_dictionary(path: Path) -> None:
    """libFuzzer's format: one quoted word a line, other than printable ASCII as \\xNN."""
    def quoted(word: str) -> str:
        return "".join(c if " " <= c <= "~" and c not in '"\\' else f"\\x{ord(c):02x}" for c in word)
    path.write_text("".join(f'"{quoted(word)}"\n' for word in _DICTIONARY))


def write_seeds(directory: Path, count: int) -> None:
    """A sample of the corpus, both labels, as the fuzzer's starting inputs."""
    directory.mkdir(parents=True, exist_ok=True)
    messages = list(SpamAssassinCorpus().messages())
    for message in random.Random(0).sample(messages, min(count, len(messages))):
        (directory / hashlib.sha1(message.data).hexdigest()).write_bytes(message.data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, default=300)
    parser.add_argument("--slow", type=float, default=1.0, help="CPU seconds that make an input a finding")
    parser.add_argument("--max-len", type=int, default=1_048_576)
    parser.add_argument("--rules", action="append", default=[],
                        help="a rule file or directory scanned with as well (repeatable)")
    args = parser.parse_args()
    seeds, queue = args.workdir / "seeds", args.workdir / "queue"
    if not seeds.exists():
        write_seeds(seeds, args.seeds)
    queue.mkdir(parents=True, exist_ok=True)
    write_dictionary(args.workdir / "mime.dict")
    harness = Harness(args.workdir, args.slow, tuple(args.rules))
    atheris.Setup([sys.argv[0], f"-runs={args.runs}", f"-max_len={args.max_len}",
                   "-rss_limit_mb=8192", "-timeout=60", "-print_final_stats=1",
                   f"-dict={args.workdir / 'mime.dict'}", str(queue), str(seeds)],
                  harness.run_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
