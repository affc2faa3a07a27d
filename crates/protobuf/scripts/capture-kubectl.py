#!/usr/bin/env python3
"""A fake API server on 127.0.0.1 that records what kubectl POSTs.

Usage: capture-kubectl.py PORT OUTPUT_DIR
then, for example:
    KUBECONFIG=/dev/null kubectl --server http://127.0.0.1:PORT create configmap x --from-literal=a=b

It answers discovery (/api, /apis and their resource lists) for the resources
kubectl's typed `create` subcommands use, serves a Deployment `web` for
`kubectl autoscale deployment web`, and saves each POST body as
OUTPUT_DIR/NN_<path>.pb before echoing it back. Those bodies are the fixtures in
tests/fixtures/.
"""
import http.server
import json
import os
import sys


def res(name, kind, namespaced, verbs=("create", "get", "list")):
    return {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": list(verbs)}


RESOURCES = {
    ("", "v1"): [
        res("configmaps", "ConfigMap", True),
        res("secrets", "Secret", True),
        res("namespaces", "Namespace", False),
        res("nodes", "Node", False),
        res("pods", "Pod", True),
        res("services", "Service", True),
        res("serviceaccounts", "ServiceAccount", True),
        res("serviceaccounts/token", "TokenRequest", True, ("create",)),
        res("resourcequotas", "ResourceQuota", True),
    ],
    ("apps", "v1"): [res("deployments", "Deployment", True), res("deployments/scale", "Scale", True)],
    ("batch", "v1"): [res("jobs", "Job", True), res("cronjobs", "CronJob", True)],
    ("autoscaling", "v2"): [res("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    ("autoscaling", "v1"): [res("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    ("authorization.k8s.io", "v1"): [res("selfsubjectaccessreviews", "SelfSubjectAccessReview", False, ("create",))],
    ("authentication.k8s.io", "v1"): [res("selfsubjectreviews", "SelfSubjectReview", False, ("create",))],
    ("rbac.authorization.k8s.io", "v1"): [
        res("roles", "Role", True),
        res("rolebindings", "RoleBinding", True),
        res("clusterroles", "ClusterRole", False),
        res("clusterrolebindings", "ClusterRoleBinding", False),
    ],
    ("networking.k8s.io", "v1"): [res("ingresses", "Ingress", True)],
    ("policy", "v1"): [res("poddisruptionbudgets", "PodDisruptionBudget", True)],
    ("scheduling.k8s.io", "v1"): [res("priorityclasses", "PriorityClass", False)],
}

DEPLOYMENT = {
    "kind": "Deployment",
    "apiVersion": "apps/v1",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}},
    },
}


class Handler(http.server.BaseHTTPRequestHandler):
    count = 0

    def reply(self, code, body, content_type="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        parts = path.strip("/").split("/")
        if path == "/api":
            obj = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        elif path == "/apis":
            groups = {}
            for group, version in RESOURCES:
                if group:
                    groups.setdefault(group, []).append(version)
            obj = {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
                for g, vs in groups.items()]}
        elif parts[0] == "api" and len(parts) == 2:
            obj = {"kind": "APIResourceList", "groupVersion": parts[1], "resources": RESOURCES.get(("", parts[1]), [])}
        elif parts[0] == "apis" and len(parts) == 3:
            obj = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{parts[1]}/{parts[2]}",
                   "resources": RESOURCES.get((parts[1], parts[2]), [])}
        elif path.endswith("/deployments/web"):
            obj = DEPLOYMENT
        else:
            obj = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            return self.reply(404, json.dumps(obj).encode())
        self.reply(200, json.dumps(obj).encode())

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Handler.count += 1
        name = self.path.split("?")[0].strip("/").replace("/", "_")
        out = os.path.join(sys.argv[2], f"{Handler.count:02d}_{name}.pb")
        with open(out, "wb") as f:
            f.write(body)
        print(f"POST {self.path} ({self.headers.get('Content-Type')}) -> {out}", file=sys.stderr)
        self.reply(201, body, self.headers.get("Content-Type", "application/json"))

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    os.makedirs(sys.argv[2], exist_ok=True)
    http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
