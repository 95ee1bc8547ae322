"""A schema registry for weir's tests: the part of the Confluent Schema Registry REST API that
weir and the Confluent clients use, on 127.0.0.1, schemas kept in memory.

No Confluent-compatible registry server installs on the test machine, so this one follows
the documented API: ids are global and shared by equal schemas across subjects, versions
count from 1 per subject, errors are JSON bodies `{"error_code", "message"}` with the
documented codes (40401 subject not found, 40402 version not found, 40403 schema not found,
42201 invalid schema, 40101 unauthorized). Avro schemas are checked with fastavro. Protobuf
schemas are kept in the form they arrive in (.proto source text, or the base64
FileDescriptorProto confluent-kafka's serializer sends), with their `schemaType` and their
references (`{name, subject, version}`, each naming a registered version), and answered as
they were given: query parameters such as `normalize`, `deleted` and `format` are accepted and
ignored.

    registry.py --port PORT [--user U --password-file F]

For fault injection, `POST /_test/outage {"match": "GET /schemas/ids/"}` makes every request
whose method and path start with `match` answer 503 until `DELETE /_test/outage`.
"""

import argparse
import base64
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

JSON = "application/vnd.schemaregistry.v1+json"


class Registry:
    def __init__(self):
        self.lock = threading.Lock()
        self.schemas = []  # id - 1 -> {"schema", "schemaType", "references"}
        self.subjects = {}  # subject -> [id of version 1, id of version 2, ...]
        self.compatibility = {"": "BACKWARD"}
        self.outage = None

    def id_of(self, schema):
        for i, known in enumerate(self.schemas):
            if same(known, schema):
                return i + 1
        self.schemas.append(schema)
        return len(self.schemas)


def same(a, b):
    """One schema, written differently or not: Avro schemas compare parsed, as the registry
    compares them canonicalised."""
    if a["schemaType"] != b["schemaType"] or a["references"] != b["references"]:
        return False
    if a["schemaType"] == "AVRO":
        try:
            return json.loads(a["schema"]) == json.loads(b["schema"])
        except ValueError:
            pass
    return a["schema"] == b["schema"]


class Refused(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def check_schema(registry, schema):
    kind = schema["schemaType"]
    if kind == "AVRO":
        import fastavro

        try:
            fastavro.parse_schema(json.loads(schema["schema"]))
        except Exception as e:  # noqa: BLE001 - any parse failure is an invalid schema
            raise Refused(422, 42201, f"Invalid schema {schema['schema'][:80]}: {e}")
    elif kind not in ("PROTOBUF", "JSON"):
        raise Refused(422, 42201, f"Unknown schema type {kind}")
    for ref in schema["references"]:
        versions = registry.subjects.get(ref.get("subject"), [])
        if not isinstance(ref.get("version"), int) or not 0 < ref["version"] <= len(versions) or not ref.get("name"):
            raise Refused(422, 42201, f"Invalid schema: no schema reference found for {ref}")


def handler(registry, user, password):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            sys.stderr.write("registry: " + fmt % args + "\n")

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", JSON)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                return json.loads(raw or b"{}")
            except ValueError:
                raise Refused(422, 42201, "the body is not JSON")

        def authorized(self):
            if user is None:
                return True
            expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            return self.headers.get("Authorization") == expected

        def handle_any(self, method):
            path = urlsplit(self.path).path
            try:
                if path.startswith("/_test/"):
                    return self.test_control(method, path)
                if not self.authorized():
                    raise Refused(401, 40101, "Unauthorized")
                outage = registry.outage
                if outage and f"{method} {path}".startswith(outage):
                    raise Refused(503, 50003, "registry unavailable (test outage)")
                with registry.lock:
                    status, body = self.route(method, path)
                self.answer(status, body)
            except Refused as e:
                self.answer(e.status, {"error_code": e.code, "message": e.message})

        def test_control(self, method, path):
            if path == "/_test/outage" and method == "POST":
                registry.outage = self.body()["match"]
            elif path == "/_test/outage" and method == "DELETE":
                registry.outage = None
            else:
                raise Refused(404, 404, "no such test control")
            self.answer(200, {})

        def route(self, method, path):
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if parts[:1] == ["associations"]:
                raise Refused(404, 40410, "Association not found")
            if parts == ["subjects"] and method == "GET":
                return 200, sorted(registry.subjects)
            if parts[:1] == ["config"]:
                subject = parts[1] if len(parts) > 1 else ""
                if method == "PUT":
                    registry.compatibility[subject] = self.body()["compatibility"]
                    return 200, {"compatibility": registry.compatibility[subject]}
                level = registry.compatibility.get(subject)
                if level is None:
                    raise Refused(404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")
                return 200, {"compatibilityLevel": level}
            if len(parts) == 3 and parts[:2] == ["schemas", "ids"] and method == "GET":
                return self.schema_by_id(parts[2])
            if len(parts) >= 2 and parts[0] == "subjects":
                return self.subject(method, parts[1], parts[2:])
            raise Refused(404, 404, f"HTTP 404 Not Found: {method} {path}")

        def schema_by_id(self, text):
            if not re.fullmatch(r"\d+", text) or not 0 < int(text) <= len(registry.schemas):
                raise Refused(404, 40403, f"Schema {text} not found")
            schema = registry.schemas[int(text) - 1]
            body = {"schema": schema["schema"]}
            if schema["schemaType"] != "AVRO":
                body["schemaType"] = schema["schemaType"]
            if schema["references"]:
                body["references"] = schema["references"]
            return 200, body

        def subject(self, method, subject, rest):
            if method == "POST" and rest == ["versions"]:
                body = self.body()
                schema = {
                    "schema": body.get("schema", ""),
                    "schemaType": body.get("schemaType", "AVRO"),
                    "references": body.get("references") or [],
                }
                check_schema(registry, schema)
                sid = registry.id_of(schema)
                versions = registry.subjects.setdefault(subject, [])
                if sid not in versions:
                    versions.append(sid)
                return 200, {"id": sid}
            versions = registry.subjects.get(subject)
            if versions is None:
                raise Refused(404, 40401, f"Subject '{subject}' not found.")
            if method == "POST" and rest == []:
                body = self.body()
                for number, sid in enumerate(versions, 1):
                    asked = {"schema": body.get("schema", ""), "schemaType": body.get("schemaType", "AVRO"),
                             "references": body.get("references") or []}
                    if same(registry.schemas[sid - 1], asked):
                        return 200, self.version_body(subject, number, sid)
                raise Refused(404, 40403, "Schema not found")
            if method == "GET" and rest == ["versions"]:
                return 200, list(range(1, len(versions) + 1))
            if method == "GET" and len(rest) == 2 and rest[0] == "versions":
                if rest[1] in ("latest", "-1"):
                    number = len(versions)
                elif re.fullmatch(r"\d+", rest[1]) and 0 < int(rest[1]) <= len(versions):
                    number = int(rest[1])
                else:
                    raise Refused(404, 40402, f"Version {rest[1]} not found.")
                return 200, self.version_body(subject, number, versions[number - 1])
            raise Refused(405, 405, f"HTTP 405 Method Not Allowed: {method}")

        def version_body(self, subject, number, sid):
            schema = registry.schemas[sid - 1]
            body = {"subject": subject, "version": number, "id": sid, "schema": schema["schema"]}
            if schema["schemaType"] != "AVRO":
                body["schemaType"] = schema["schemaType"]
            if schema["references"]:
                body["references"] = schema["references"]
            return body

        def do_GET(self):
            self.handle_any("GET")

        def do_POST(self):
            self.handle_any("POST")

        def do_PUT(self):
            self.handle_any("PUT")

        def do_DELETE(self):
            self.handle_any("DELETE")

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user")
    p.add_argument("--password-file")
    args = p.parse_args()
    password = None
    if args.password_file:
        with open(args.password_file) as f:
            password = f.read().strip()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler(Registry(), args.user, password))
    server.serve_forever()


if __name__ == "__main__":
    main()
