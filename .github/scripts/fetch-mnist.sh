#!/usr/bin/env bash
# Download the four MNIST IDX files into DIR (CI only; the project's machines use a local copy).
# Source: the mirror torchvision uses; each file is checked against the published MD5 of the
# original LeCun files, so a tampered or truncated download fails the job.
#   .github/scripts/fetch-mnist.sh DIR
set -euo pipefail
dir=${1:?usage: fetch-mnist.sh DIR}
base=https://ossci-datasets.s3.amazonaws.com/mnist
mkdir -p "$dir"
cd "$dir"
while read -r md5 name; do
    if [[ ! -f $name ]] || ! echo "$md5  $name" | md5sum --check --status; then
        curl --fail --silent --show-error --location --retry 3 --output "$name" "$base/$name"
    fi
    echo "$md5  $name" | md5sum --check
done <<'SUMS'
f68b3c2dcbeaaa9fbdd348bbdeb94873 train-images-idx3-ubyte.gz
d53e105ee54ea40749a09fcbcd1e9432 train-labels-idx1-ubyte.gz
9fb629c4189551a2d022fa330f9573f3 t10k-images-idx3-ubyte.gz
ec29112dd5afa0611ce80d1b7f02629c t10k-labels-idx1-ubyte.gz
SUMS
