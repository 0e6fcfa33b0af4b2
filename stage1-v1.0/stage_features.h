// What this stage offers, for the shared tests and the course app compiled against it.
#pragma once

#define TORNADO_STAGE 1
#define TORNADO_STAGE_NAME "stage1-v1.0"
#define TORNADO_VERSION "1.0"
#define TORNADO_HAS_PREFORK 1            // HTTPServer::bind()/start(n): stage1
#define TORNADO_HAS_PERIODIC_CALLBACK 1  // PeriodicCallback: stage1
#define TORNADO_HAS_MERGE_PREFIX 0       // deque buffers: stage2
#define TORNADO_HAS_FIFO_CALLBACKS 0     // callbacks run in order: stage2
#define TORNADO_HAS_TIMEOUT_HEAP 0       // remove_timeout after firing is harmless: stage2
#define TORNADO_HAS_CONNECT 0            // IOStream::connect: stage2
#define TORNADO_HAS_CONFIGURABLE 0       // --ioloop epoll|poll|select: stage3
#define TORNADO_HAS_SSL 1                // HTTPS, ssl_options: stage1
#define TORNADO_HAS_SSL_IOSTREAM 0       // SSLIOStream, client certificates: stage2
#define TORNADO_HAS_STREAM_HIERARCHY 0   // BaseIOStream, PipeIOStream: stage3
