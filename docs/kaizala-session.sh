#!/usr/bin/env bash
# A worked Kaizala session against a local openspot (the README's Kaizala section).
# Start the server first:  openspot serve   (or: cargo run --release -- serve)
# Run from the directory holding openspot.db, with `openspot` on PATH
# (or OPENSPOT=target/release/openspot bash docs/kaizala-session.sh).
set -euo pipefail
OPENSPOT=${OPENSPOT:-openspot}
BASE=${BASE:-http://127.0.0.1:8080}
field() { python3 -c "import sys, json; print(json.load(sys.stdin)['$1'])"; }

# 1. An operator creates a spot, a connector, and a user token for a phone number.
SPOT=$($OPENSPOT spots create --name "Field team" --json)
SPOT_ID=$(echo "$SPOT" | field spotId); API_KEY=$(echo "$SPOT" | field apiKey)
CONNECTOR=$($OPENSPOT kaizala connectors create --spot "$SPOT_ID" --name "my connector" --json)
APP_ID=$(echo "$CONNECTOR" | field applicationId); APP_SECRET=$(echo "$CONNECTOR" | field applicationSecret)
REFRESH=$($OPENSPOT kaizala tokens create --application-id "$APP_ID" --mobile-number +911199999999 --json | field refreshToken)

# 2. The connector script exchanges its refresh token for an access token and endpoint.
ACCESS=$(curl -s "$BASE/kaizala/v1/accessToken" \
  -H "applicationId: $APP_ID" -H "applicationSecret: $APP_SECRET" -H "refreshToken: $REFRESH")
echo "accessToken response: $ACCESS"
TOKEN=$(echo "$ACCESS" | field accessToken); ENDPOINT=$(echo "$ACCESS" | field endpointUrl)

# 3. It creates a group (Kaizala's own sample body: unquoted keys) ...
GROUP=$(curl -s -X POST "$ENDPOINT/v1/groups" -H "accessToken: $TOKEN" -H "Content-Type: application/json" \
  -d '{name:"Field team", welcomeMessage:"Welcome!", members:["+911199999990"], groupType:"Group"}')
echo "created: $GROUP"
GROUP_ID=$(echo "$GROUP" | field groupId)

# 4. ... adds a member (single quotes, as Python's str(dict) writes them) and lists them.
curl -s -X PUT "$ENDPOINT/v1/groups/$GROUP_ID/members" -H "accessToken: $TOKEN" \
  -d "{'members': ['+91 11 9999 9991']}"; echo
curl -s "$ENDPOINT/v1/groups/$GROUP_ID/members" -H "accessToken: $TOKEN"; echo

# 5. The same group and members through the MeltingSpot dialect.
curl -s "$BASE/v1/groups/$GROUP_ID/spotMembers" -H "Authorization: Bearer $API_KEY"; echo
