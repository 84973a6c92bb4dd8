# efs2atlas, as the runner task of `efs2atlas migrate --runner ecs` (and as a CLI in a box).
# Two stages, as in the original notes: the build stage compiles the release binary; the
# runtime stage is a slim image with CA certificates, a non-root user and the binary.
#   docker build -t efs2atlas .                  # the runtime image
#   docker build --target build -t efs2atlas-build .   # only the build stage
# Base images are arguments so an offline machine can name local ones (scripts/image).
ARG BUILD_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
# Dependencies first, so a change to the sources does not refetch them.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests ./tests
# No debug lines in the image (the repository's release profile keeps them for profiling).
RUN cargo build --release --locked --bin efs2atlas \
      --config profile.release.debug=false --config profile.release.strip=true \
    && cp target/release/efs2atlas /efs2atlas

FROM ${RUNTIME_IMAGE}
# Distroless cc has glibc, libgcc, CA certificates and the nonroot user (65532).
COPY --from=build /efs2atlas /usr/local/bin/efs2atlas
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/efs2atlas"]
CMD ["--help"]
