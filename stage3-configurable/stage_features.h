// What this stage offers, for the shared tests and the course app compiled against it.
#pragma once

#define TORNADO_STAGE 3
#define TORNADO_STAGE_NAME "stage3-configurable"
#define TORNADO_VERSION "3.0"
#define TORNADO_HAS_PREFORK 1            // HTTPServer::bind()/start(n): stage1
#define TORNADO_HAS_PERIODIC_CALLBACK 1  // PeriodicCallback: stage1
#define TORNADO_HAS_MERGE_PREFIX 1       // deque buffers: stage2
#define TORNADO_HAS_FIFO_CALLBACKS 1     // callbacks run in order: stage2
#define TORNADO_HAS_TIMEOUT_HEAP 1       // remove_timeout after firing is harmless: stage2
#define TORNADO_HAS_CONNECT 1            // IOStream::connect: stage2
#define TORNADO_HAS_CONFIGURABLE 1       // --ioloop epoll|poll|select: stage3
#define TORNADO_HAS_SSL 1                // HTTPS, ssl_options: stage1
#define TORNADO_HAS_SSL_IOSTREAM 1       // SSLIOStream, client certificates: stage2
#define TORNADO_HAS_STREAM_HIERARCHY 1   // BaseIOStream, PipeIOStream: stage3
