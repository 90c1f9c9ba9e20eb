# Every Slipway image in one bake: `make images`, or directly
#
#   docker buildx bake -f deploy/docker/docker-bake.hcl                  # group "default" = all
#   REGISTRY=localhost:5000 TAG=dev PLATFORMS=linux/amd64 \
#     docker buildx bake -f deploy/docker/docker-bake.hcl --load api     # one image, loaded
#
# Images are named slipway-<target>:<TAG>, under REGISTRY when it is set (minikube's registry
# addon, or a production registry such as ghcr.io/acme). A multi-platform build must be pushed
# (--push) or exported: the classic image store loads one platform at a time.
# `tests/deploy` checks that every target here is a runtime stage of the Dockerfile.

variable "REGISTRY" {
  # e.g. "localhost:5000" or "ghcr.io/acme"; empty: no registry prefix
  default = ""
}

variable "TAG" {
  default = "dev"
}

variable "PLATFORMS" {
  # comma-separated
  default = "linux/amd64,linux/arm64"
}

function "image" {
  params = [name]
  result = REGISTRY == "" ? "slipway-${name}:${TAG}" : "${trimsuffix(REGISTRY, "/")}/slipway-${name}:${TAG}"
}

group "default" {
  targets = ["all"]
}

group "all" {
  targets = ["api", "worker-build", "worker-launch", "worker-cleanup", "cli"]
}

# What every image shares: one Dockerfile, one build stage (built once, shared by all targets).
target "_common" {
  context    = "."
  dockerfile = "deploy/docker/Dockerfile"
  platforms  = split(",", PLATFORMS)
  labels = {
    "org.opencontainers.image.version" = TAG
  }
}

target "api" {
  inherits = ["_common"]
  target   = "api"
  tags     = [image("api")]
}

target "worker-build" {
  inherits = ["_common"]
  target   = "worker-build"
  tags     = [image("worker-build")]
}

target "worker-launch" {
  inherits = ["_common"]
  target   = "worker-launch"
  tags     = [image("worker-launch")]
}

target "worker-cleanup" {
  inherits = ["_common"]
  target   = "worker-cleanup"
  tags     = [image("worker-cleanup")]
}

target "cli" {
  inherits = ["_common"]
  target   = "cli"
  tags     = [image("cli")]
}
