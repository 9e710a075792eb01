"""The gateway's upstream HTTP/1.1 client against a raw TCP server sending exactly the bytes we choose."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sovstack.gateway import http1

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return head + await reader.readexactly(length)


def serve(handler: Handler, test: Callable[[str], Awaitable[None]]) -> None:
    async def main() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await test(f"http://127.0.0.1:{port}/v1")
        finally:
            server.close()

    asyncio.run(main())


def test_content_length_answer_reuses_the_connection_and_sends_headers() -> None:
    seen: list[bytes] = []
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                seen.append(await _read_request(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}")
            await writer.drain()

    async def test(url: str) -> None:
        client = http1.Client()
        for _ in range(3):
            resp = await client.post(url + "/chat/completions", b'{"x":1}', {"authorization": "Bearer k"}, 2.0)
            assert resp.status == 200 and resp.headers["content-type"] == "application/json"
            assert await resp.read() == b'{"a":1}'
        await client.aclose()

    serve(handler, test)
    assert connections == 1
    assert seen[0].startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nauthorization: Bearer k\r\n" in seen[0] and seen[0].endswith(b'\r\n\r\n{"x":1}')


def test_chunked_stream_comes_line_by_line() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"data: one\n\n", b"data: t", b"wo\r\n\r\n", b"data: [DONE]\n\n"):
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def test(url: str) -> None:
        resp = await http1.Client().post(url, b"{}", {}, 2.0)
        lines = [line async for line in resp.iter_lines()]
        assert lines == ["data: one", "", "data: two", "", "data: [DONE]", ""]

    serve(handler, test)


def test_body_delimited_by_close_is_read_whole() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async def test(url: str) -> None:
        resp = await http1.Client().post(url, b"{}", {}, 2.0)
        assert await resp.read() == b"all of it"

    serve(handler, test)


def test_a_kept_alive_connection_the_upstream_closed_is_not_reused() -> None:
    answers = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answers
        await _read_request(reader)
        answers += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()  # closes the kept-alive connection after one answer, without saying so

    async def test(url: str) -> None:
        client = http1.Client()
        for _ in range(3):
            resp = await client.post(url, b"{}", {}, 2.0)
            assert await resp.read() == b"ok"
            await asyncio.sleep(0.05)

    serve(handler, test)
    assert answers == 3


def test_a_post_is_never_silently_sent_twice_when_a_kept_alive_connection_drops() -> None:
    """D12: the upstream read the request and then closed: it may have acted on it, so no silent resend."""
    received = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        await _read_request(reader)
        received += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await _read_request(reader)  # the second request on the kept-alive connection arrives …
        received += 1
        writer.close()  # … and the connection drops before any answer

    async def test(url: str) -> None:
        client = http1.Client()
        assert await (await client.post(url, b"{}", {}, 2.0)).read() == b"ok"
        with pytest.raises(http1.MaybeSent, match="may have received it"):
            await client.post(url, b"{}", {}, 2.0)

    serve(handler, test)
    assert received == 2  # not 3


def test_a_connection_idle_past_the_servers_keep_alive_timeout_is_not_reused() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async def test(url: str) -> None:
        client = http1.Client()
        for _ in range(2):
            assert await (await client.post(url, b"{}", {}, 2.0)).read() == b"ok"
        await client.aclose()

    serve(handler, test)
    assert connections == 2  # "timeout=1" leaves no safe idle time: a new connection each time


def test_silence_times_out_and_refusal_is_a_connect_failure() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    async def test(url: str) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(http1.TimedOut):
            await http1.Client().post(url, b"{}", {}, 0.2)
        assert loop.time() - started < 1.0
        with pytest.raises(http1.ConnectFailed):
            await http1.Client().post("http://127.0.0.1:9/v1", b"{}", {}, 1.0)

    serve(handler, test)


def test_garbage_oversize_and_header_injection_are_refused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _read_request(reader)
        if b"/big" in request:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100)
        else:
            writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    async def test(url: str) -> None:
        client = http1.Client()
        with pytest.raises(http1.ProtocolFailed, match="not HTTP"):
            await client.post(url, b"{}", {}, 1.0)
        resp = await client.post(url + "/big", b"{}", {}, 1.0)
        with pytest.raises(http1.ProtocolFailed, match="larger than 10 bytes"):
            await resp.read(limit=10)
        with pytest.raises(http1.ProtocolFailed, match="line break"):
            await client.post(url, b"{}", {"authorization": "Bearer a\r\nX-Evil: 1"}, 1.0)

    serve(handler, test)


def test_slow_reader_pauses_the_upstream_instead_of_buffering_everything() -> None:
    sent = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        block = b"y" * 65536
        try:
            for _ in range(200):  # 13 MB offered
                writer.write(b"10000\r\n" + block + b"\r\n")
                await asyncio.wait_for(writer.drain(), 1.0)
                sent += len(block)
        except (TimeoutError, ConnectionError):
            return

    async def test(url: str) -> None:
        resp = await http1.Client().post(url, b"{}", {}, 2.0)
        stream = resp.iter_bytes()
        await stream.__anext__()
        await asyncio.sleep(1.5)  # the relay's client is not reading
        await stream.aclose()

    serve(handler, test)
    assert sent < 8 * 1024 * 1024, f"the server could push {sent} bytes into a reader that was not reading"


def test_url_parsing() -> None:
    t = http1.target("https://api.example.org/v1")
    assert (t.host, t.port, t.tls, t.host_header, t.path) == ("api.example.org", 443, True, "api.example.org", "/v1")
    assert http1.target("http://[::1]:8000/x?y=1").host_header == "[::1]:8000"
    with pytest.raises(http1.ConnectFailed):
        http1.target("ftp://example.org/")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def test_https_upstream_is_verified_against_the_trusted_authorities(tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_file, key_file)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _read_request(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")
        await writer.drain()

    async def main() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_tls)
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        try:
            with pytest.raises(http1.ConnectFailed, match="certificate"):  # not trusted by default
                await http1.Client().post(url, b"{}", {}, 2.0)
            trusted = ssl.create_default_context(cafile=str(cert_file))
            resp = await http1.Client(ssl_context=trusted).post(url, b"{}", {}, 2.0)
            assert await resp.read() == b"secret"
        finally:
            server.close()

    asyncio.run(main())
