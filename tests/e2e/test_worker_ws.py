"""hive-worker's WebSocket endpoint /ws end to end (SPEC §5, §7), with `websockets`.

Run: HIVE_BUILD_DIR=build-e2e /usr/bin/python3 tests/e2e/test_worker_ws.py
"""

import asyncio
import json
import os
import re
import sys

import websockets

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hive_e2e import (BOT, HEX8, WorkerTestCase, main, parse_response, run_async,  # noqa: E402
                      ws_frame, ws_raw_handshake, ws_read_frame, ws_read_message,
                      ws_recv_json, ws_recv_until)

ISO_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def connect(w, path="/ws", **kw):
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 5)
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", None)
    return websockets.connect("ws://127.0.0.1:%d%s" % (w.port, path), **kw)


async def still_open(ws):
    """The connection still answers: ping → pong."""
    await ws.send(json.dumps({"type": "ping"}))
    m = await ws_recv_json(ws)
    return m.get("type") == "pong"


async def expect_close(ws, timeout=10):
    """Wait for the server to close; returns the close code."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.exceptions.ConnectionClosed as e:
        return e.rcvd.code if e.rcvd else None


class TaskFlow(WorkerTestCase):
    """ack → started → chunk* → response, and what lands on disk."""

    def test_sequence_and_fields_mock(self):
        w = self.new_worker()

        async def go():
            async with connect(w) as ws:
                await ws.send(json.dumps({"type": "task", "command": "Say hello\nworld"}))
                return await ws_recv_until(ws, lambda m: m.get("type") == "response")
        msgs = run_async(go())
        types = [m["type"] for m in msgs]
        self.assertEqual(types[0], "ack", msgs)
        self.assertEqual(types[1], "started", msgs)
        self.assertEqual(types[-1], "response", msgs)
        self.assertTrue(all(t == "chunk" for t in types[2:-1]), msgs)
        ack, started, resp = msgs[0], msgs[1], msgs[-1]
        tid = ack["task_id"]
        self.assertRegex(tid, r"^WS-" + HEX8 + "$")
        self.assertEqual(ack["status"], "queued")
        self.assertRegex(ack["timestamp"], ISO_UTC)
        self.assertEqual(started["task_id"], tid)
        self.assertRegex(started["timestamp"], ISO_UTC)
        for c in msgs[2:-1]:
            self.assertEqual(c["task_id"], tid)
            self.assertIsInstance(c["content"], str)
        self.assertEqual(resp["task_id"], tid)
        self.assertIs(resp["success"], True)
        self.assertIsNone(resp["error"])
        self.assertIsInstance(resp["duration_seconds"], (int, float))
        self.assertEqual(resp["source"], "websocket")
        self.assertRegex(resp["timestamp"], ISO_UTC)
        self.assertIn("Say hello", resp["content"])
        if len(msgs) > 3:
            self.assertEqual("".join(c["content"] for c in msgs[2:-1]), resp["content"])
        # on disk and over HTTP
        name, text = w.wait_response(tid)
        self.assertIn("-%s-user-RESPONSE-%s-complete" % (BOT, tid), name)
        fields = parse_response(text)
        self.assertEqual(fields["Source"], "websocket")
        self.assertEqual(fields["To"], "user")
        j = w.task(tid).json()
        self.assertEqual(j["state"], "done")
        self.assertEqual(j["source"], "websocket")
        self.assertEqual(j["result"]["response_file"], name)
        self.assertEqual(w.listdir("_archive"), [tid + ".json"])

    def test_chunks_stream_cli_output(self):
        w = self.new_worker("--adapter-type", "cli", "--",
                            "sh", "-c", "cat; sleep 0.3; echo tail-line")

        async def go():
            async with connect(w) as ws:
                await ws.send(json.dumps({"type": "task", "command": "first part",
                                          "task_id": "ws-chunks"}))
                return await ws_recv_until(ws, lambda m: m.get("type") == "response")
        msgs = run_async(go())
        self.assertEqual([m["type"] for m in msgs[:2]], ["ack", "started"], msgs)
        chunks = [m for m in msgs if m["type"] == "chunk"]
        self.assertGreaterEqual(len(chunks), 1, msgs)
        resp = msgs[-1]
        self.assertIs(resp["success"], True, resp)
        self.assertEqual("".join(c["content"] for c in chunks), resp["content"])
        self.assertIn("first part", resp["content"])
        self.assertIn("tail-line", resp["content"])

    def test_given_id_and_failed_task(self):
        w = self.new_worker()

        async def go():
            async with connect(w) as ws:
                await ws.send(json.dumps({"type": "task", "command": "x\nMOCK-FAIL",
                                          "task_id": "ws-fail", "priority": "P1"}))
                return await ws_recv_until(ws, lambda m: m.get("type") == "response")
        msgs = run_async(go())
        self.assertEqual(msgs[0]["task_id"], "ws-fail")
        resp = msgs[-1]
        self.assertIs(resp["success"], False)
        self.assertIsInstance(resp["error"], str)
        name, text = w.wait_response("ws-fail")
        self.assertTrue(name.endswith("-failed.md"), name)
        self.assertTrue(parse_response(text)["has_error_section"])

    def test_several_tasks_on_one_connection(self):
        w = self.new_worker()

        async def go():
            async with connect(w) as ws:
                for i in range(3):
                    await ws.send(json.dumps({"type": "task", "command": "n%d" % i,
                                              "task_id": "multi-%d" % i}))
                seen = set()
                msgs = await ws_recv_until(
                    ws, lambda m: m.get("type") == "response" and (
                        seen.add(m["task_id"]) or len(seen) == 3))
                return msgs
        msgs = run_async(go())
        acks = [m["task_id"] for m in msgs if m["type"] == "ack"]
        self.assertEqual(sorted(acks), ["multi-0", "multi-1", "multi-2"])
        for i in range(3):
            self.assertEqual(len(w.responses("multi-%d" % i)), 1)

    def test_client_disconnect_after_ack_loses_nothing(self):
        w = self.new_worker("--mock-delay-ms", "800")

        async def go():
            async with connect(w) as ws:
                await ws.send(json.dumps({"type": "task", "command": "orphan",
                                          "task_id": "ws-orphan"}))
                ack = await ws_recv_json(ws)
                return ack
        ack = run_async(go())      # closes right after the ack
        self.assertEqual(ack["type"], "ack", ack)
        self.assertEqual(ack["task_id"], "ws-orphan")
        name, text = w.wait_response("ws-orphan")
        self.assertIn("**Source:** websocket", text)
        j = w.wait_state("ws-orphan", ("done", "failed"))
        self.assertEqual(j["state"], "done", j)
        self.assertEqual(j["result"]["response_file"], name)
        self.assertEqual(len(w.responses("ws-orphan")), 1)
        self.assertTrue(w.alive())

    def test_abrupt_disconnect_while_running(self):
        """The client's TCP connection vanishes without a close frame mid-task."""
        w = self.new_worker("--mock-delay-ms", "600")
        s, f, status = ws_raw_handshake(w.port)
        self.assertEqual(status, 101)
        s.sendall(ws_frame(1, json.dumps({"type": "task", "command": "x", "task_id": "abrupt"})))
        self.assertEqual(ws_read_message(f)["type"], "ack")
        s.close()
        w.wait_state("abrupt", "done")
        self.assertEqual(len(w.responses("abrupt")), 1)
        self.assertEqual(w.get("/health").status, 200)


class Messages(WorkerTestCase):
    """ping, status and the error messages; errors keep the connection open."""

    def test_ping_pong(self):
        w = self.new_worker()

        async def go():
            async with connect(w) as ws:
                await ws.send(json.dumps({"type": "ping"}))
                return await ws_recv_json(ws)
        m = run_async(go())
        self.assertEqual(m["type"], "pong")
        self.assertRegex(m["timestamp"], ISO_UTC)

    def test_status(self):
        w = self.new_worker()

        async def go():
            async with connect(w) as ws:
                await ws.send(json.dumps({"type": "status"}))
                return await ws_recv_json(ws)
        m = run_async(go())
        self.assertEqual(m["type"], "status")
        http = w.status()
        for key in ("bot_id", "status", "mode", "port", "pid", "uptime_seconds",
                    "tasks_processed", "tasks_failed", "current_task", "queue", "timestamp",
                    "version"):
            self.assertIn(key, m)
        self.assertEqual(m["bot_id"], BOT)
        self.assertEqual(m["status"], "idle")
        self.assertEqual(m["port"], w.port)
        self.assertEqual(m["pid"], http["pid"])

    def errors(self, w, payloads):
        async def go():
            out = []
            async with connect(w) as ws:
                for p in payloads:
                    await ws.send(p)
                    out.append(await ws_recv_json(ws))
                out.append(await still_open(ws))
            return out
        return run_async(go())

    def test_invalid_json(self):
        w = self.new_worker()
        res = self.errors(w, ["{", "not json at all", '{"type": "task",}'])
        for m in res[:-1]:
            self.assertEqual(m, {"type": "error", "message": "Invalid JSON format"})
        self.assertTrue(res[-1], "connection closed after an error")

    def test_missing_command(self):
        w = self.new_worker()
        res = self.errors(w, [json.dumps({"type": "task"}),
                              json.dumps({"type": "task", "command": ""})])
        for m in res[:-1]:
            self.assertEqual(m["type"], "error")
            self.assertEqual(m["message"], "Missing 'command' field")
        self.assertTrue(res[-1])
        self.assertEqual(w.listdir("_realtime"), [])

    def test_unknown_type(self):
        w = self.new_worker()
        res = self.errors(w, [json.dumps({"type": "bogus"}), json.dumps({"type": "X"})])
        self.assertEqual(res[0]["type"], "error")
        self.assertEqual(res[0]["message"], "Unknown message type: bogus")
        self.assertEqual(res[1]["message"], "Unknown message type: X")
        self.assertTrue(res[-1])

    def test_non_object_json(self):
        w = self.new_worker()
        payloads = ["[1]", '"x"', "42", "null", "true", "[]"]
        res = self.errors(w, payloads)
        for p, m in zip(payloads, res):
            with self.subTest(payload=p):
                self.assertEqual(m["type"], "error", m)
                self.assertIsInstance(m["message"], str)
                self.assertTrue(m["message"])
        self.assertTrue(res[-1])
        self.assertEqual(w.get("/health").status, 200)

    def test_invalid_task_id(self):
        w = self.new_worker()
        res = self.errors(w, [json.dumps({"type": "task", "command": "x", "task_id": "../x"}),
                              json.dumps({"type": "task", "command": "x", "task_id": "a" * 300})])
        for m in res[:-1]:
            self.assertEqual(m["type"], "error")
            self.assertIn("task_id", m["message"])
        self.assertTrue(res[-1])
        self.assertEqual(w.listdir("_realtime"), [])

    def test_duplicate_id(self):
        w = self.new_worker("--mock-delay-ms", "1500")

        async def go():
            async with connect(w) as ws:
                await ws.send(json.dumps({"type": "task", "command": "a", "task_id": "ws-dup"}))
                await ws_recv_until(ws, lambda m: m.get("type") == "started")
                await ws.send(json.dumps({"type": "task", "command": "b", "task_id": "ws-dup"}))
                err = await ws_recv_json(ws)
                return err, await still_open(ws)
        err, ok = run_async(go())
        self.assertEqual(err["type"], "error", err)
        self.assertEqual(err.get("status_code"), 409, err)
        self.assertTrue(ok)

    def test_queue_full_429(self):
        w = self.new_worker("--queue-max", "1", "--mock-delay-ms", "2000")

        async def go():
            async with connect(w) as ws:
                await ws.send(json.dumps({"type": "task", "command": "runs"}))
                await ws_recv_until(ws, lambda m: m.get("type") == "started")
                await ws.send(json.dumps({"type": "task", "command": "waits"}))
                ack = await ws_recv_json(ws)
                await ws.send(json.dumps({"type": "task", "command": "refused"}))
                err = await ws_recv_json(ws)
                return ack, err, await still_open(ws)
        ack, err, ok = run_async(go())
        self.assertEqual(ack["type"], "ack", ack)
        self.assertEqual(err["type"], "error", err)
        self.assertEqual(err["message"], "Task queue full - too many pending tasks")
        self.assertEqual(err["status_code"], 429)
        self.assertTrue(ok)


class Protocol(WorkerTestCase):
    """RFC 6455 details and §7 limits."""

    def test_binary_frame_closes_1003(self):
        w = self.new_worker()

        async def go():
            async with connect(w) as ws:
                await ws.send(b"\x00\x01binary")
                return await expect_close(ws)
        self.assertEqual(run_async(go()), 1003)
        self.assertEqual(w.get("/health").status, 200)

    def test_message_over_max_message_closes_1009(self):
        w = self.new_worker("--max-message", "1000")

        async def go():
            async with connect(w) as ws:
                await ws.send(json.dumps({"type": "task", "command": "x" * 2000}))
                return await expect_close(ws)
        self.assertEqual(run_async(go()), 1009)
        self.assertEqual(w.listdir("_realtime"), [])
        self.assertEqual(w.responses(), [])

    def test_message_under_max_message_is_fine(self):
        w = self.new_worker("--max-message", "1000")

        async def go():
            async with connect(w) as ws:
                await ws.send(json.dumps({"type": "task", "command": "y" * 800}))
                return await ws_recv_json(ws)
        self.assertEqual(run_async(go())["type"], "ack")

    def test_fragmented_message(self):
        w = self.new_worker()

        async def go():
            async with connect(w) as ws:
                text = json.dumps({"type": "ping"})
                await ws.send([text[:3], text[3:7], text[7:]])
                return await ws_recv_json(ws)
        self.assertEqual(run_async(go())["type"], "pong")

    def test_control_frame_between_fragments(self):
        w = self.new_worker()
        s, f, status = ws_raw_handshake(w.port)
        with s:
            self.assertEqual(status, 101)
            text = json.dumps({"type": "ping"})
            s.sendall(ws_frame(1, text[:4], fin=False) + ws_frame(9, b"hi")
                      + ws_frame(0, text[4:], fin=True))
            # the pong to our ping frame, then our JSON pong
            while True:
                op, data = ws_read_frame(f)
                if op == 10:
                    self.assertEqual(data, b"hi")
                    continue
                self.assertEqual(op, 1)
                self.assertEqual(json.loads(data)["type"], "pong")
                break

    def test_invalid_utf8_closes_1007(self):
        w = self.new_worker()
        s, f, status = ws_raw_handshake(w.port)
        with s:
            self.assertEqual(status, 101)
            s.sendall(ws_frame(1, b'{"type":"ping","x":"\xff\xfe"}'))
            self.assertEqual(ws_read_message(f), ("close", 1007))
        self.assertEqual(w.get("/health").status, 200)

    def test_foreign_origin_403(self):
        w = self.new_worker()

        async def go():
            try:
                async with connect(w, origin="http://evil.example"):
                    return "connected"
            except websockets.exceptions.InvalidStatusCode as e:
                return e.status_code
        self.assertEqual(run_async(go()), 403)
        s, f, status = ws_raw_handshake(w.port, origin="http://evil.example:%d" % w.port)
        s.close()
        self.assertEqual(status, 403)

    def test_own_and_allowed_origins_accepted(self):
        w = self.new_worker("--allowed-origin", "http://good.example")

        async def go(origin):
            async with connect(w, origin=origin) as ws:
                return await still_open(ws)
        self.assertTrue(run_async(go("http://127.0.0.1:%d" % w.port)))
        self.assertTrue(run_async(go("http://good.example")))
        self.assertTrue(run_async(go(None)))

    def test_token_required_for_ws(self):
        w = self.new_worker("--token", "wstok")

        async def go(path, headers=None):
            try:
                async with connect(w, path, extra_headers=headers or {}) as ws:
                    return await still_open(ws)
            except websockets.exceptions.InvalidStatusCode as e:
                return e.status_code
        self.assertEqual(run_async(go("/ws")), 401)
        self.assertEqual(run_async(go("/ws?token=nope")), 401)
        self.assertIs(run_async(go("/ws?token=wstok")), True)
        self.assertIs(run_async(go("/ws", {"Authorization": "Bearer wstok"})), True)

    def test_plain_get_on_ws_is_refused(self):
        w = self.new_worker()
        r = w.get("/ws")
        self.assertIn(r.status, (400, 426), r)
        self.assertEqual(w.get("/health").status, 200)

    def test_sessions_closed_1001_on_stop(self):
        w = self.new_worker()

        async def go():
            async with connect(w) as ws:
                await ws.send(json.dumps({"type": "ping"}))
                await ws_recv_json(ws)
                w.terminate()
                return await expect_close(ws)
        self.assertEqual(run_async(go()), 1001)
        self.assertEqual(w.wait_exit(), 0)

    def test_stop_with_a_client_that_never_closes(self):
        # A client that ignores our close frame must not keep the worker
        # alive or leak its session (LeakSanitizer would exit 1).
        w = self.new_worker()
        sock, f, status = ws_raw_handshake(w.port)
        self.assertEqual(status, 101)
        try:
            w.terminate()
            self.assertEqual(w.wait_exit(), 0)
        finally:
            sock.close()


if __name__ == "__main__":
    main()
