# One build, three images: docker build --target gateway|silo|agent .
FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
COPY . .
RUN dotnet publish src/Gateway -c Release -o /out/gateway \
 && dotnet publish src/Silo -c Release -o /out/silo \
 && dotnet publish src/Agent -c Release -r linux-x64 -o /out/agent

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS silo
WORKDIR /app
COPY --from=build /out/silo .
# Orleans silo-to-silo, client gateway, and /metrics + /healthz.
EXPOSE 11111 30000 9464
ENTRYPOINT ["dotnet", "EphemeralOrleans.Silo.dll"]

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS gateway
WORKDIR /app
COPY --from=build /out/gateway .
EXPOSE 8080 8081
ENTRYPOINT ["dotnet", "EphemeralOrleans.Gateway.dll"]

# eo as one self-contained file (no .NET runtime in the image) with libsodium beside it.
FROM mcr.microsoft.com/dotnet/runtime-deps:10.0 AS agent
# The data plane: userspace WireGuard and the tools the agent drives. Run with --cap-add NET_ADMIN and
# --device /dev/net/tun (or the agent's --tun none for control only).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wireguard-go iproute2 nftables \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/agent/eo /out/agent/libsodium.so /opt/eo/
ENV PATH=/opt/eo:$PATH
ENTRYPOINT ["eo"]
