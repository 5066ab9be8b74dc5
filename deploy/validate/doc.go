// Package validate checks what deploy/ ships, without a network, a Docker
// engine or a cluster; it has only tests:
//
//   - every Kubernetes manifest under deploy/k8s is decoded strictly into
//     the official API types (an unknown or duplicated field is an error),
//     the base and both overlays are built with kustomize, and the built
//     objects are held to the deployment's rules (probes, resources, a
//     Service, a PodDisruptionBudget and an autoscaler per Deployment,
//     processing bounded by the partitions of `hits`, topic and keyspace
//     replication, only the gateway reachable from outside, no secret as a
//     literal value, terminationGracePeriodSeconds covering drain delay and
//     shutdown timeout, the gateway's shutdown timeout covering its longest
//     route time limit, read from the defaults in its -help golden file
//     when deploy/ does not set it);
//   - deploy/compose/compose.yaml is loaded with the Compose specification's
//     own Go loader and held to the same rules;
//   - deploy/docker/Dockerfile is parsed with BuildKit's parser: a
//     multi-stage build of a static binary (CGO_ENABLED=0) from the whole
//     workspace, run as a numeric non-root user, with no secret in it;
//   - the versions of Kafka, Cassandra and Consul agree between compose,
//     the Kubernetes manifests and the operators' resources.
//
// With DEPLOY_VALIDATE_BIN set to a directory of built binaries (make
// build's bin/), every environment variable given to a binary is also
// checked against the flags the binary itself lists in -help, and every
// binary is run with -check-config in the environment each compose service
// and Kubernetes container gives it (Secrets as placeholders), which it
// must find valid.
//
// It is a module of its own, outside go.work, so that its dependencies
// (Kubernetes, kustomize, compose-go, BuildKit) never reach the services'
// module graphs. Run it with `cd deploy/validate && GOWORK=off go test ./...`.
package validate
