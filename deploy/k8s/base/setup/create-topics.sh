#!/usr/bin/env bash
# Creates the pipeline's Kafka topics with their production settings, or
# brings the settings of existing topics to the declared values. It runs in
# the apache/kafka image: as the kafka-topics service of deploy/compose and as
# the kafka-topics Job of deploy/k8s (both mount this very file).
#
# Partition counts and replication factors are checked, never changed: adding
# partitions to `hits` moves visitors between partitions and must be done
# with processing drained, and a replication factor changes only through a
# partition reassignment (docs/operations.md says how). A mismatch fails the
# run so that it is seen. Topic configs (retention, min.insync.replicas...)
# are applied every run, which is idempotent.
#
# Settings, all from the environment:
#   KAFKA_BOOTSTRAP_SERVERS    host:port[,host:port...]
#   HITS_PARTITIONS            partitions of `hits` (bounds processing replicas)
#   DEAD_LETTER_PARTITIONS     partitions of `hits-dead-letter`
#   REPLICATION_FACTOR         replicas of each partition (3 in production)
#   MIN_INSYNC_REPLICAS        acks=all succeeds with this many (2 in production)
#   HITS_RETENTION_MS          how long hits stay replayable (7 days)
#   DEAD_LETTER_RETENTION_MS   how long dead letters are kept (30 days)
set -euo pipefail

: "${KAFKA_BOOTSTRAP_SERVERS:?set KAFKA_BOOTSTRAP_SERVERS}"
: "${HITS_PARTITIONS:?set HITS_PARTITIONS}"
: "${DEAD_LETTER_PARTITIONS:?set DEAD_LETTER_PARTITIONS}"
: "${REPLICATION_FACTOR:?set REPLICATION_FACTOR}"
: "${MIN_INSYNC_REPLICAS:?set MIN_INSYNC_REPLICAS}"
: "${HITS_RETENTION_MS:?set HITS_RETENTION_MS}"
: "${DEAD_LETTER_RETENTION_MS:?set DEAD_LETTER_RETENTION_MS}"

bin=${KAFKA_BIN:-/opt/kafka/bin}
bootstrap=(--bootstrap-server "$KAFKA_BOOTSTRAP_SERVERS")

if (( MIN_INSYNC_REPLICAS >= REPLICATION_FACTOR && REPLICATION_FACTOR > 1 )); then
	echo "MIN_INSYNC_REPLICAS ($MIN_INSYNC_REPLICAS) must be below REPLICATION_FACTOR ($REPLICATION_FACTOR), or one broker down stops all writes" >&2
	exit 1
fi

for attempt in $(seq 1 60); do
	if "$bin/kafka-broker-api-versions.sh" "${bootstrap[@]}" >/dev/null 2>&1; then
		break
	fi
	if (( attempt == 60 )); then
		echo "no Kafka broker answered at $KAFKA_BOOTSTRAP_SERVERS within 5 minutes" >&2
		exit 1
	fi
	sleep 5
done

# ensure_topic NAME PARTITIONS CONFIG...
ensure_topic() {
	local name=$1 partitions=$2
	shift 2
	local configs=("$@")
	local description
	if description=$("$bin/kafka-topics.sh" "${bootstrap[@]}" --describe --topic "$name" 2>/dev/null) && [[ -n $description ]]; then
		local have_partitions have_rf
		have_partitions=$(grep -o 'PartitionCount: *[0-9]*' <<<"$description" | head -1 | grep -o '[0-9]*$')
		have_rf=$(grep -o 'ReplicationFactor: *[0-9]*' <<<"$description" | head -1 | grep -o '[0-9]*$')
		if [[ $have_partitions != "$partitions" ]]; then
			echo "topic $name has $have_partitions partitions, the deployment declares $partitions: change partition counts by hand with processing drained (docs/operations.md, 'Adding partitions')" >&2
			return 1
		fi
		if [[ $have_rf != "$REPLICATION_FACTOR" ]]; then
			echo "topic $name has replication factor $have_rf, the deployment declares $REPLICATION_FACTOR: reassign its partitions (docs/operations.md)" >&2
			return 1
		fi
		local joined
		joined=$(IFS=,; echo "${configs[*]}")
		"$bin/kafka-configs.sh" "${bootstrap[@]}" --alter --entity-type topics --entity-name "$name" --add-config "$joined"
		echo "topic $name: $partitions partitions, replication factor $REPLICATION_FACTOR, configs applied: $joined"
	else
		local args=()
		for c in "${configs[@]}"; do
			args+=(--config "$c")
		done
		"$bin/kafka-topics.sh" "${bootstrap[@]}" --create --if-not-exists --topic "$name" \
			--partitions "$partitions" --replication-factor "$REPLICATION_FACTOR" "${args[@]}"
		echo "topic $name created: $partitions partitions, replication factor $REPLICATION_FACTOR"
	fi
}

common=(
	"cleanup.policy=delete"
	"min.insync.replicas=$MIN_INSYNC_REPLICAS"
	"unclean.leader.election.enable=false"
	# The producers compress (snappy); keep their batches as they are.
	"compression.type=producer"
	# Time decides what is deleted; disks are sized for the retention.
	"retention.bytes=-1"
)

ensure_topic hits "$HITS_PARTITIONS" "${common[@]}" "retention.ms=$HITS_RETENTION_MS"
ensure_topic hits-dead-letter "$DEAD_LETTER_PARTITIONS" "${common[@]}" "retention.ms=$DEAD_LETTER_RETENTION_MS"
