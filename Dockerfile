# The pgrecall image used by docker-compose.yml.
# It installs the built wheel, never the source tree: .ci/build-and-install builds the sdist, the
# wheel from it, and installs that wheel into /opt/pgrecall. CI cannot run `docker build` here, so
# .ci/run runs that same script on every run and then imports every module and runs
# `pgrecall --version`, `migrate` and `demo` from the installed wheel (.ci/check_wheel.py).
# The `mcp` extra makes `pgrecall serve` answer MCP at /mcp too.
FROM python:3.11-slim AS build
WORKDIR /src
COPY . .
RUN bash .ci/build-and-install /src /tmp/dist /opt/pgrecall mcp

FROM python:3.11-slim
COPY --from=build /opt/pgrecall /opt/pgrecall
ENV PATH=/opt/pgrecall/bin:$PATH
RUN useradd --create-home pgrecall
USER pgrecall
ENTRYPOINT []
CMD ["pgrecall", "--help"]
