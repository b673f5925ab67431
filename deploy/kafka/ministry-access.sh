#!/usr/bin/env bash
# The ministry principal on the broker's MINISTRY listener (TLS + SASL SCRAM-SHA-512): its SCRAM
# credential, and ACLs that let it read pmtct.referrals.v1 in its own consumer group, nothing else.
# Run by the compose job `kafka-access` against the internal listener; running it again changes
# nothing (the credential is set again, an ACL that exists is not added twice).
set -euo pipefail
: "${KAFKA_MINISTRY_USER:?}" "${KAFKA_MINISTRY_PASSWORD:?}" "${KAFKA_MINISTRY_GROUP:?}"
BOOTSTRAP=kafka:9092
TOPIC=pmtct.referrals.v1
BIN=/opt/kafka/bin

# (the job's container runs nothing else, so no other process sees the password on this command line)
"$BIN/kafka-configs.sh" --bootstrap-server "$BOOTSTRAP" --alter \
  --entity-type users --entity-name "$KAFKA_MINISTRY_USER" \
  --add-config "SCRAM-SHA-512=[iterations=8192,password=$KAFKA_MINISTRY_PASSWORD]"

"$BIN/kafka-acls.sh" --bootstrap-server "$BOOTSTRAP" --add \
  --allow-principal "User:$KAFKA_MINISTRY_USER" \
  --operation Read --operation Describe \
  --topic "$TOPIC" --resource-pattern-type literal
"$BIN/kafka-acls.sh" --bootstrap-server "$BOOTSTRAP" --add \
  --allow-principal "User:$KAFKA_MINISTRY_USER" \
  --operation Read \
  --group "$KAFKA_MINISTRY_GROUP" --resource-pattern-type literal
echo "ministry access: User:$KAFKA_MINISTRY_USER reads $TOPIC in group $KAFKA_MINISTRY_GROUP"
