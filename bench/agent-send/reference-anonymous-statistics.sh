#!/usr/bin/env sh
# A stand-in for the reference agent's anonymous-statistics script, for timing only: it
# does the same work (read os-release, run uname three times and systemd-detect-virt when
# present, POST one JSON event with curl --max-time 2) against the same collector.
#
#   reference-anonymous-statistics.sh ACTION [ACTION_RESULT [ACTION_DATA]]
#   environment: ENDPOINT, TOKEN, CONFIG_DIR, PRODUCT_VERSION
ACTION="${1}"
ACTION_RESULT="${2}"
ACTION_DATA="$(echo "${3}" | tr '"' "'")"

[ -f "${CONFIG_DIR:-/etc/anonstats}/.opt-out-from-anonymous-statistics" ] && exit 0
[ -n "${DISABLE_TELEMETRY}" ] && exit 0

OS_DETECTION="unknown"
NAME="unknown"; ID="unknown"; ID_LIKE="unknown"; VERSION="unknown"; VERSION_ID="unknown"
if [ -f /etc/os-release ]; then
    OS_DETECTION="/etc/os-release"
    eval "$(grep -E "^(NAME|ID|ID_LIKE|VERSION|VERSION_ID)=" < /etc/os-release)"
fi

KERNEL_NAME="$(uname -s)"
KERNEL_VERSION="$(uname -r)"
ARCHITECTURE="$(uname -m)"

VIRTUALIZATION="unknown"
VIRT_DETECTION="none"
if command -v systemd-detect-virt > /dev/null 2>&1; then
    VIRTUALIZATION="$(systemd-detect-virt -v)"
    VIRT_DETECTION="systemd-detect-virt"
fi

BODY="$(cat << EOF2
{
  "api_key": "${TOKEN}",
  "batch": [{
    "event": "${ACTION}",
    "distinct_id": "00000000-0000-4000-8000-000000000000",
    "properties": {
      "\$ip": "127.0.0.1",
      "\$current_url": "agent backend",
      "\$pathname": "anonstats-agent",
      "\$host": "agent.anonstats.invalid",
      "action": "${ACTION}",
      "action_result": "${ACTION_RESULT}",
      "action_data": "${ACTION_DATA}",
      "product_version": "${PRODUCT_VERSION}",
      "host_os_name": "${NAME}",
      "host_os_id": "${ID}",
      "host_os_id_like": "${ID_LIKE}",
      "host_os_version": "${VERSION}",
      "host_os_version_id": "${VERSION_ID}",
      "host_os_detection": "${OS_DETECTION}",
      "system_kernel_name": "${KERNEL_NAME}",
      "system_kernel_version": "${KERNEL_VERSION}",
      "system_architecture": "${ARCHITECTURE}",
      "system_virtualization": "${VIRTUALIZATION}",
      "system_virt_detection": "${VIRT_DETECTION}"
    }
  }]
}
EOF2
)"

curl -s -X POST --max-time 2 -H "Content-Type: application/json" -d "${BODY}" "${ENDPOINT}/batch/" > /dev/null 2>&1
true
