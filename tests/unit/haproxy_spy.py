"""A fake haproxy admin socket that records every byte it receives (the socket spy)."""
import os
import socketserver
import threading

HEADER = ("pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,"
          "wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,"
          "sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,"
          "check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,"
          "req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,"
          "lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,"
          "agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,"
          "agent_fall,agent_health,addr,cookie,mode,algo,-").split(",")


class FakeHAProxy:
    """haproxy's runtime API, as far as haproxy_admin uses it, over a unix or TCP socket.

    ``servers``: {backend: {server: {"status", "scur", "qcur"}}}. ``commands`` lists every
    line received, ``connections`` counts accepted connections. ``on_show`` is called before
    each ``show stat`` answer (to move sessions or statuses along).
    """

    def __init__(self, path=None, servers=None, level="admin", tcp=False, silent=False):
        self.servers = servers if servers is not None else {
            be: {"ctl01": {"status": "UP", "scur": 0, "qcur": 0},
                 "ctl02": {"status": "UP", "scur": 0, "qcur": 0}}
            for be in ("keystone", "nova", "placement")}
        self.level = level
        self.silent = silent
        self.commands = []
        self.raw = []
        self.connections = 0
        self.on_show = None
        self.after_ready = ["UP 1/2", "UP"]
        spy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                spy.connections += 1
                data = self.rfile.readline()
                spy.raw.append(data)
                if spy.silent:
                    self.rfile.read()  # never answer; the client must time out
                    return
                line = data.decode().rstrip("\n")
                spy.commands.append(line)
                self.wfile.write(spy.answer(line).encode())

        if tcp:
            self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
            self.address = "127.0.0.1:%d" % self.server.server_address[1]
        else:
            self.server = socketserver.ThreadingUnixStreamServer(path, Handler)
            self.address = path
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        if not self.address[0].isdigit() and os.path.exists(self.address):
            os.unlink(self.address)

    @property
    def sets(self):
        return [c for c in self.commands if c.startswith("set ")]

    def csv(self):
        rows = ["# " + ",".join(HEADER)]
        for be, servers in self.servers.items():
            for name, srv in servers.items():
                row = {"pxname": be, "svname": name, "qcur": srv.get("qcur", 0),
                       "scur": srv.get("scur", 0), "status": srv["status"], "weight": 1,
                       "act": 1, "bck": 0, "type": 2, "check_status": srv.get("check_status", "L7OK"),
                       "check_desc": srv.get("check_desc", "Layer7 check passed"),
                       "addr": "127.0.0.1:1", "mode": "http"}
                rows.append(",".join(str(row.get(h, "")) for h in HEADER))
            rows.append(",".join(str({"pxname": be, "svname": "BACKEND", "status": "UP",
                                      "type": 1, "scur": 0, "qcur": 0}.get(h, ""))
                                 for h in HEADER))
        return "\n".join(rows) + "\n\n"

    def answer(self, line):
        if line == "show cli level":
            return self.level + "\n"
        if line == "show stat":
            if self.on_show:
                self.on_show(self)
            return self.csv()
        if line.startswith("set server "):
            if self.level != "admin":
                return "Permission denied\n\n"
            _, _, target, _, state = line.split(" ")
            be, _, name = target.partition("/")
            if be not in self.servers:
                return "No such backend.\n\n"
            if name not in self.servers[be]:
                return "No such server.\n\n"
            srv = self.servers[be][name]
            if state == "ready":
                srv["pending"] = list(self.after_ready)
                srv["status"] = srv["pending"].pop(0)
            else:
                srv["status"] = state.upper()
            return "\n"
        return "Unknown command\n\n"

    def advance(self):
        """Move servers that were set ready one step along ``after_ready``."""
        for servers in self.servers.values():
            for srv in servers.values():
                if srv.get("pending"):
                    srv["status"] = srv["pending"].pop(0)
