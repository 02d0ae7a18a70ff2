vcl 4.1;
# Varnish under benchmark: the built-in VCL (TTL from the origin's
# Cache-Control, request coalescing on) with one backend, the demo origin.
# run.sh replaces the @NAMES@ before use.

backend origin {
    .host = "127.0.0.1";
    .port = "@ORIGIN_PORT@";
}

sub vcl_deliver {
    # Tells the coalescing client which response was the fill.
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
