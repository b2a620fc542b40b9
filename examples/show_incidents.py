"""Print open incidents from incidentd's API as on-call would read them."""

import json
import sys
import urllib.request

url = (sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:9095") + "/api/v1/incidents?state=open"
with urllib.request.urlopen(url, timeout=10) as resp:
    incidents = json.load(resp)["incidents"]
print(f"{len(incidents)} open incident(s)")
for inc in incidents:
    print(f"{inc['id']}  {inc['priority']}  {inc['severity']:8}  {inc['title']}")
    print(f"  root cause: {inc['root_cause'] or '-'}   impacted: {', '.join(inc['impacted']) or '-'}")
    if inc.get("explanation"):
        print(f"  why: {inc['explanation']}")
    for a in inc["alerts"]:
        why = a["reason"] or "opened the incident"
        print(f"  - {a['labels'].get('alertname')} on {a['ci'] or 'no CI'}: {why}")
