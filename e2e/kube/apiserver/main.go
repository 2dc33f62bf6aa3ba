// Command kube-apiserver is the upstream Kubernetes API server, built from Go
// modules (k8s.io/kubernetes, pinned in go.mod) for Rudder's e2e tests:
// e2e/kube/ensure.sh builds it and e2e/support/kube.rs runs it against etcd.
// Nothing here changes its behaviour; it is exactly what kube-apiserver runs.
package main

import (
	"os"

	_ "time/tzdata" // the upstream binary embeds zone data too (CronJob time zones)

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	command := app.NewAPIServerCommand()
	code := cli.Run(command)
	os.Exit(code)
}
