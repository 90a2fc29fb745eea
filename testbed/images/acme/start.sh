#!/bin/sh
# Ports from the environment (testbed/__init__.py: one set per instance): ACME_PORT (the ACME
# directory, https), ACME_MANAGEMENT_PORT (pebble's roots), DNS_PORT and DNS_MANAGEMENT_PORT
# (challtestsrv), HTTP01_PORT (where challenges are checked: the staging host's port 80).
# Certificates live one day (CERT_SECONDS), so renewal can be tested by asking for it early.
set -eu
mkdir -p /state
if [ ! -f /state/api-cert.pem ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj /CN=testbed-acme -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout /state/api-key.pem -out /state/api-cert.pem 2>/dev/null
fi
cat > /state/pebble.json <<JSON
{"pebble": {"listenAddress": "127.0.0.1:${ACME_PORT}",
 "managementListenAddress": "127.0.0.1:${ACME_MANAGEMENT_PORT}",
 "certificate": "/state/api-cert.pem", "privateKey": "/state/api-key.pem",
 "httpPort": ${HTTP01_PORT}, "tlsPort": 1, "ocspResponderURL": "",
 "externalAccountBindingRequired": false, "certificateValidityPeriod": ${CERT_SECONDS:-86400}}}
JSON
pebble-challtestsrv -dns01 "127.0.0.1:${DNS_PORT}" -http01 "" -https01 "" -tlsalpn01 "" \
  -management "127.0.0.1:${DNS_MANAGEMENT_PORT}" -defaultIPv6 "" &
# No random sleeps before validating, no rejected nonces: a test's time is its own.
export PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0
exec pebble -config /state/pebble.json -dnsserver "127.0.0.1:${DNS_PORT}" -strict
