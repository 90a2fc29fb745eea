#!/bin/sh
# Names the release (APP_VERSION: the commit, set at build) in /version.json and in the
# X-App-Version header, picks the stand-in's shape (APP_SHAPE: story, the default, or
# one-entry), then runs nginx.
set -eu
printf '{"version": "%s"}\n' "$APP_VERSION" > /usr/share/nginx/html/version.json
sed -i "s/@version@/$APP_VERSION/" /etc/nginx/conf.d/app.conf
if [ "${APP_SHAPE:-story}" = "one-entry" ]; then
  sed -e "s/@backend_host@/$BACKEND_HOST/" -e "s/@connect_timeout@/$BACKEND_CONNECT_TIMEOUT/" \
    /etc/nginx/api-proxy.conf > /etc/nginx/app-api.conf
else
  printf 'location /api/ {\n    return 404 "the API is served beside this frontend\\n";\n}\n' \
    > /etc/nginx/app-api.conf
fi
exec nginx -g 'daemon off;'
