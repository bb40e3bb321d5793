"""Creates a container in Azurite (or any Azure Blob endpoint) with a Shared Key request, so
that .ci/cloud-test needs no Azure SDK. Usage: azure_container.py ENDPOINT ACCOUNT KEY NAME,
ENDPOINT being http://HOST:PORT/ACCOUNT (path style, as Azurite serves it)."""

import base64
import email.utils
import hashlib
import hmac
import sys
import urllib.error
import urllib.parse
import urllib.request


def main():
    endpoint, account, key, name = sys.argv[1:5]
    url = f"{endpoint.rstrip('/')}/{name}?restype=container"
    path = urllib.parse.urlparse(url).path
    date = email.utils.formatdate(usegmt=True)
    version = "2021-08-06"
    # VERB, then 11 standard headers (Content-Encoding, -Language, -Length (empty for 0),
    # -MD5, -Type, Date, If-Modified-Since, If-Match, If-None-Match, If-Unmodified-Since,
    # Range), then the x-ms-* headers and the resource.
    content_type = "application/octet-stream"
    to_sign = "\n".join(
        ["PUT", "", "", "", "", content_type] + [""] * 6
        + [f"x-ms-date:{date}", f"x-ms-version:{version}"]
        + [f"/{account}{path}\nrestype:container"]
    )
    signature = base64.b64encode(
        hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    request = urllib.request.Request(url, method="PUT", data=b"")
    request.add_header("Content-Type", content_type)
    request.add_header("x-ms-date", date)
    request.add_header("x-ms-version", version)
    request.add_header("Authorization", f"SharedKey {account}:{signature}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            print(f"container {name}: {answer.status}")
    except urllib.error.HTTPError as e:
        if e.code == 409:
            print(f"container {name}: exists")
            return
        sys.exit(f"creating container {name}: {e.code} {e.read().decode(errors='replace')}")


if __name__ == "__main__":
    main()
