# A static meshward binary in an empty image.
#   docker build -t meshward .
#   docker run --cap-add NET_ADMIN --network host -v /var/lib/meshward:/var/lib/meshward \
#     -v /etc/meshward:/etc/meshward:ro -v /var/log:/var/log:ro meshward
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/meshward ./cmd/meshward \
 && mkdir -p /out/var/lib/meshward /out/etc/meshward

FROM scratch
COPY --from=build /out/meshward /meshward
COPY --from=build --chown=65532:65532 /out/var/lib/meshward /var/lib/meshward
COPY --from=build /out/etc/meshward /etc/meshward
USER 65532:65532
VOLUME ["/var/lib/meshward"]
EXPOSE 7946/tcp 7946/udp
ENTRYPOINT ["/meshward"]
CMD ["agent", "--config", "/etc/meshward/node.yaml"]
