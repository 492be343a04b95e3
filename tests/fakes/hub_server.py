"""A protocol-level stand-in for the Hugging Face hub on 127.0.0.1: the endpoints huggingface_hub's
`create_repo` and `create_commit`/`upload_folder` call, read from huggingface_hub's source (hf_api.py,
_commit_api.py, lfs.py). Reach it with HF_ENDPOINT (or `HfApi(endpoint=server.url)`).

    POST /api/repos/create                              {"name", "organization", "visibility"?} → {"url"}; 409: exists
    POST /api/validate-yaml                             a README's front matter must parse as a YAML mapping
    POST /api/models/{repo}/preupload/{revision}        upload mode of each file: "lfs" for binary or large files
    POST /{repo}.git/info/lfs/objects/batch             git-lfs batch API, "basic" transfer: one PUT a file
    PUT  /lfs-objects/{oid}                             the file's bytes; refused unless sha256(bytes) == oid
    POST /{repo}.git/info/lfs/objects/verify            {"oid", "size"} must name an uploaded object
    POST /api/models/{repo}/commit/{revision}           NDJSON: header, then "file" (base64) and "lfsFile" lines

It serves the git-lfs protocol, not Xet: a client must run with HF_HUB_DISABLE_XET=1 (hf_xet, when
installed, would otherwise upload large files to a Xet storage service this fake does not implement).

Every API call needs `Authorization: Bearer <token>` with the token given to the server (else 401), except
the LFS object PUT, which like the hub's pre-signed storage URLs carries no token. What was asked is kept in
`server.requests` (method, path, whether it was authorised) and what was committed in `server.repos`.
`server.fail(1, status=500, echo=True)`: the next request gets that status and a body echoing the request.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import yaml

from tests.fakes import Failing

LFS_MIN_SIZE = 10 * 1024 * 1024  # the hub's rule: a text file becomes LFS above 10 MB, a binary one always
REPO = r"(?P<repo>[^/]+/[^/]+?)"


@dataclass
class Repo:
    repo_id: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    lfs_paths: set[str] = field(default_factory=set)
    commits: list[dict] = field(default_factory=list)


@dataclass
class Seen:
    method: str
    path: str
    authorised: bool


class FakeHub(Failing, ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}  # oid → bytes
        self.requests: list[Seen] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, name="fake-hub", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


class _Error(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class _Handler(BaseHTTPRequestHandler):
    server: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    # -- plumbing ---------------------------------------------------------------------------------

    def do_GET(self) -> None:  # nothing is served by GET: the client's optional look-ups get a 404
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        path = unquote(urlsplit(self.path).path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        authorised = self.headers.get("Authorization") == f"Bearer {self.server.token}"
        if failed := self.server.take_failure(method, self.path, dict(self.headers.items()), body):
            return self._answer(*failed)
        with self.server.lock:
            self.server.requests.append(Seen(method, path, authorised))
            try:
                route, args = self._route(method, path)
                if route != self.put_object and not authorised:
                    raise _Error(401, "Invalid username or password.")
                status, payload = route(body, **args)
            except _Error as e:
                status, payload = e.status, {"error": e.message}
        self._answer(status, payload)

    def _answer(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400:
            self.send_header("X-Error-Message", payload["error"].encode("latin-1", "replace").decode("latin-1"))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str, path: str):
        routes = [
            ("POST", r"/api/repos/create", self.create_repo),
            ("POST", r"/api/validate-yaml", self.validate_yaml),
            ("POST", rf"/api/models/{REPO}/preupload/(?P<revision>[^/]+)", self.preupload),
            ("POST", rf"/{REPO}\.git/info/lfs/objects/batch", self.lfs_batch),
            ("POST", rf"/{REPO}\.git/info/lfs/objects/verify", self.lfs_verify),
            ("PUT", r"/lfs-objects/(?P<oid>[0-9a-f]{64})", self.put_object),
            ("POST", rf"/api/models/{REPO}/commit/(?P<revision>[^/]+)", self.commit),
        ]
        for verb, pattern, handler in routes:
            m = re.fullmatch(pattern, path)
            if verb == method and m:
                return handler, m.groupdict()
        raise _Error(404, f"no route for {method} {path}")

    def _repo(self, repo: str) -> Repo:
        if repo not in self.server.repos:
            raise _Error(404, f"Repository Not Found for url: {repo}")
        return self.server.repos[repo]

    # -- endpoints --------------------------------------------------------------------------------

    def create_repo(self, body: bytes):
        spec = json.loads(body)
        repo_id = f"{spec['organization']}/{spec['name']}" if spec.get("organization") else spec["name"]
        url = f"{self.server.url}/{repo_id}"
        if repo_id in self.server.repos:
            return 409, {"error": "You already created this model repo", "url": url}
        self.server.repos[repo_id] = Repo(repo_id, private=spec.get("visibility") == "private")
        return 200, {"url": url, "name": repo_id}

    def validate_yaml(self, body: bytes):
        content = json.loads(body)["content"]
        m = re.match(r"---\n(.*?)\n---\n", content, re.S)
        if not m:
            return 200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]}
        try:
            meta = yaml.safe_load(m.group(1))
        except yaml.YAMLError as e:
            return 400, {"error": "invalid yaml", "errors": [{"message": str(e)}]}
        if not isinstance(meta, dict):
            return 400, {"error": "invalid yaml", "errors": [{"message": "metadata must be a mapping"}]}
        return 200, {"errors": [], "warnings": []}

    def preupload(self, body: bytes, repo: str, revision: str):
        self._repo(repo)
        files = []
        for f in json.loads(body)["files"]:
            sample = base64.b64decode(f["sample"])
            lfs = b"\x00" in sample or f["size"] >= LFS_MIN_SIZE
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": None})
        return 200, {"files": files}

    def lfs_batch(self, body: bytes, repo: str):
        self._repo(repo)
        request = json.loads(body)
        if request.get("operation") != "upload" or "basic" not in request.get("transfers", ["basic"]):
            raise _Error(400, "only basic uploads are served")
        objects = []
        for obj in request["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.server.lfs:
                entry["actions"] = {
                    "upload": {"href": f"{self.server.url}/lfs-objects/{obj['oid']}"},
                    "verify": {"href": f"{self.server.url}/{repo}.git/info/lfs/objects/verify"},
                }
            objects.append(entry)
        return 200, {"transfer": "basic", "objects": objects}

    def put_object(self, body: bytes, oid: str):
        if hashlib.sha256(body).hexdigest() != oid:
            raise _Error(400, "content does not match its oid")
        self.server.lfs[oid] = body
        return 200, {}

    def lfs_verify(self, body: bytes, repo: str):
        self._repo(repo)
        obj = json.loads(body)
        if len(self.server.lfs.get(obj["oid"], b"")) != obj["size"] or obj["oid"] not in self.server.lfs:
            raise _Error(404, f"object {obj['oid']} was not uploaded")
        return 200, {}

    def commit(self, body: bytes, repo: str, revision: str):
        target = self._repo(repo)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0]["key"] != "header":
            raise _Error(400, "a commit starts with its header")
        files, lfs_paths = {}, set()
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.server.lfs:
                    raise _Error(400, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                files[value["path"]] = self.server.lfs[value["oid"]]
                lfs_paths.add(value["path"])
            else:
                raise _Error(400, f"operation {line['key']} is not served")
        target.files.update(files)
        target.lfs_paths |= lfs_paths
        oid = hashlib.sha1(json.dumps(sorted(files)).encode() + str(len(target.commits)).encode()).hexdigest()
        target.commits.append({"oid": oid, "summary": lines[0]["value"]["summary"], "revision": revision,
                               "paths": sorted(files)})
        return 200, {"commitUrl": f"{self.server.url}/{repo}/commit/{oid}", "commitOid": oid,
                     "pullRequestUrl": None}
