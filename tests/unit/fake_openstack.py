"""A fake keystone + nova + glance + placement (+ optional neutron/cinder) on a real local
http.server: catalog JSON and tokens, for openstack_verify's tests."""
import http.server
import json
import socketserver
import threading
import urllib.parse

PASSWORD = "s3cr3t-Pa55word"
TOKEN = "gAAAAABtoken-0123456789abcdef"


class FakeCloud:
    def __init__(self):
        self.requests = []          # (method, path, token header or None)
        self.bodies = []            # request bodies received (to find the password)
        self.services_down = set()  # hosts whose nova-compute is down
        self.broken = {}            # path prefix -> HTTP status to answer
        self.with_network = False
        self.with_volume = False
        self.slow = 0.0
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, address: None  # clients that gave up
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def catalog(self):
        def svc(type_, path):
            return {"type": type_, "name": type_, "endpoints": [
                {"interface": iface, "region_id": "RegionOne", "region": "RegionOne",
                 "url": f"{self.base}{path}"} for iface in ("public", "internal")]}
        out = [svc("identity", "/identity/v3"), svc("compute", "/compute/v2.1"),
               svc("image", "/image"), svc("placement", "/placement")]
        if self.with_network:
            out.append(svc("network", "/network"))
        if self.with_volume:
            out.append(svc("volumev3", "/volume/v3/project1"))
        return out

    def _handler(self):
        cloud = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body, headers=None):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                cloud.bodies.append(raw)
                path = urllib.parse.urlsplit(self.path).path
                cloud.requests.append(("POST", path, self.headers.get("X-Auth-Token")))
                if path != "/identity/v3/auth/tokens":
                    return self._send(404, {"error": {"message": "not found"}})
                if "/identity" in cloud.broken:
                    return self._send(cloud.broken["/identity"],
                                      {"error": {"message": "keystone is unwell"}})
                body = json.loads(raw)
                user = body["auth"]["identity"]["password"]["user"]
                if user["password"] != PASSWORD or user["name"] != "admin":
                    return self._send(401, {"error": {"code": 401, "message":
                                                      "The request you have made requires authentication."}})
                token = {"token": {"methods": ["password"], "user": {"name": "admin"},
                                   "catalog": cloud.catalog()}}
                self._send(201, token, {"X-Subject-Token": TOKEN})

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                path = url.path
                token = self.headers.get("X-Auth-Token")
                cloud.requests.append(("GET", path, token))
                if cloud.slow:
                    import time
                    time.sleep(cloud.slow)
                for prefix, status in cloud.broken.items():
                    if path.startswith(prefix):
                        return self._send(status, {"computeFault": {"code": status,
                                                                    "message": "Unexpected API Error."}})
                if token != TOKEN and path not in ("/placement",):
                    return self._send(401, {"error": {"message": "no token"}})
                routes = {
                    "/identity/v3/services": {"services": [
                        {"type": s["type"], "name": s["name"], "enabled": True}
                        for s in cloud.catalog()]},
                    "/identity/v3/endpoints": {"endpoints": [
                        {"interface": e["interface"], "url": e["url"]}
                        for s in cloud.catalog() for e in s["endpoints"]]},
                    "/image/v2/images": {"images": [{"id": "i1", "name": "cirros"}]},
                    "/compute/v2.1": {"version": {"id": "v2.1", "status": "CURRENT",
                                                  "version": "2.96", "min_version": "2.1"}},
                    "/compute/v2.1/flavors": {"flavors": [{"id": "1", "name": "m1.tiny"},
                                                          {"id": "2", "name": "m1.small"}]},
                    "/compute/v2.1/os-services": {"services": [
                        {"binary": b, "host": h, "zone": "nova", "status": "enabled",
                         "state": "down" if h in cloud.services_down else "up",
                         "updated_at": "2026-11-22T00:00:00"}
                        for b, h in (("nova-scheduler", "ctl01"), ("nova-conductor", "ctl01"),
                                     ("nova-compute", "cmp01"), ("nova-compute", "cmp02"))]},
                    "/compute/v2.1/os-hypervisors": {"hypervisors": [
                        {"id": 1, "hypervisor_hostname": "cmp01", "state": "up", "status": "enabled"},
                        {"id": 2, "hypervisor_hostname": "cmp02",
                         "state": "down" if "cmp02" in cloud.services_down else "up",
                         "status": "enabled"}]},
                    "/compute/v2.1/servers/detail": {"servers": [
                        {"id": "s1", "status": "ACTIVE"}, {"id": "s2", "status": "SHUTOFF"}]},
                    "/network/v2.0/networks": {"networks": [{"id": "n1"}]},
                    "/network/v2.0/subnets": {"subnets": [{"id": "s1"}]},
                    "/network/v2.0/routers": {"routers": []},
                    "/network/v2.0/ports": {"ports": [{"id": "p1"}, {"id": "p2"}]},
                    "/network/v2.0/agents": {"agents": [
                        {"agent_type": "OVN Controller agent", "host": h, "admin_state_up": True,
                         "alive": h not in cloud.services_down} for h in ("cmp01", "ctl01")]},
                    "/volume/v3/project1/volumes": {"volumes": []},
                    "/volume/v3/project1/os-services": {"services": [
                        {"binary": b, "host": h, "status": "enabled",
                         "state": "down" if h in cloud.services_down else "up"}
                        for b, h in (("cinder-scheduler", "ctl01"),
                                     ("cinder-volume", "lab-storage@fake"))]},
                    "/placement": {"versions": [{"id": "v1.0", "max_version": "1.39",
                                                 "min_version": "1.0"}]},
                }
                if path in routes:
                    return self._send(200, routes[path])
                self._send(404, {"itemNotFound": {"code": 404, "message": f"no {path}"}})

        return Handler
