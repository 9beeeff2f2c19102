module github.com/ROCm/k8s-network-node-labeller

go 1.24
