/*
 * edgevoice_fussy: an ALSA I/O plugin that behaves like a fussy sound card.
 *
 * EdgeVoice's simulator puts libasound's own "file" plugin on top of this one (the file
 * plugin reads the microphone's raw file and writes the speaker's); this plugin is the
 * "card" underneath, in place of the "null" PCM. Unlike "null" it can:
 *   rate INT          accept only this sample rate (libasound then negotiates it)
 *   channels INT      accept only this channel count
 *   paced BOOL        run on the monotonic clock like a real card: reads and writes block
 *                     for real time, and a late reader/writer gets a real overrun/underrun
 *                     (-EPIPE); unpaced, it never blocks, like "null"
 *   lock_file STR     open is exclusive, like a hw: device: a second open fails -EBUSY
 *   unplug_file STR   once this file exists the card is gone: the stream enters the
 *                     DISCONNECTED state and reads/writes fail -ENODEV, like a USB unplug
 *   buffer_bytes_min INT, buffer_bytes_max INT, period_bytes_min INT, period_bytes_max INT
 *                     the ring buffer's and the period's bounds, as a driver's own limits:
 *                     libasound then grants another buffer or period than was asked for
 * Format is S16_LE, access RW interleaved.
 *
 * Build: cc -shared -fPIC -DPIC -o libasound_module_pcm_edgevoice_fussy.so fussy_pcm.c -lasound
 *        (-DPIC makes alsa-lib's SND_PCM_PLUGIN_SYMBOL emit the dlsym'able entry point)
 * Use:   pcm_type.edgevoice_fussy { lib "/path/to/libasound_module_pcm_edgevoice_fussy.so" }
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <alsa/asoundlib.h>
#include <alsa/pcm_external.h>

typedef struct {
	snd_pcm_ioplug_t io;
	unsigned int rate;		/* 0: any */
	unsigned int channels;		/* 0: any */
	unsigned int buffer_bytes_min;
	unsigned int buffer_bytes_max;
	unsigned int period_bytes_min;
	unsigned int period_bytes_max;
	int paced;
	char *unplug_file;
	int lock_fd;
	int poll_fd;			/* eventfd (unpaced, always ready) or timerfd (paced) */
	snd_pcm_uframes_t boundary;
	snd_pcm_uframes_t hw;		/* hardware pointer, 0 .. boundary-1 */
	snd_pcm_uframes_t start_hw;	/* hw and appl at start, for the paced clock */
	snd_pcm_uframes_t start_appl;
	struct timespec start;
	int running;
} fussy_t;

static snd_pcm_uframes_t distance(fussy_t *f, snd_pcm_uframes_t to, snd_pcm_uframes_t from)
{
	return to >= from ? to - from : f->boundary - from + to;
}

static int unplugged(fussy_t *f)
{
	if (f->unplug_file && access(f->unplug_file, F_OK) == 0) {
		snd_pcm_ioplug_set_state(&f->io, SND_PCM_STATE_DISCONNECTED);
		return 1;
	}
	return 0;
}

static uint64_t elapsed_frames(fussy_t *f)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t us = (int64_t)(now.tv_sec - f->start.tv_sec) * 1000000 +
		     (now.tv_nsec - f->start.tv_nsec) / 1000;
	return (uint64_t)us * f->io.rate / 1000000;
}

/* Running: tick once per period. Stopped: fire once at once, so that a thread blocked
 * in poll() wakes up and learns the stream stopped, as the kernel wakes its sleepers. */
static void arm_timer(fussy_t *f, int running)
{
	struct itimerspec spec;
	memset(&spec, 0, sizeof(spec));
	if (running) {
		uint64_t ns = (uint64_t)f->io.period_size * 1000000000ULL / f->io.rate;
		spec.it_interval.tv_sec = ns / 1000000000ULL;
		spec.it_interval.tv_nsec = ns % 1000000000ULL;
		spec.it_value = spec.it_interval;
	} else {
		spec.it_value.tv_nsec = 1;
	}
	timerfd_settime(f->poll_fd, 0, &spec, NULL);
}

static int fussy_start(snd_pcm_ioplug_t *io)
{
	fussy_t *f = io->private_data;
	if (unplugged(f))
		return -ENODEV;
	clock_gettime(CLOCK_MONOTONIC, &f->start);
	f->start_hw = f->hw;
	f->start_appl = io->appl_ptr;
	f->running = 1;
	if (f->paced)
		arm_timer(f, 1);
	return 0;
}

static int fussy_stop(snd_pcm_ioplug_t *io)
{
	fussy_t *f = io->private_data;
	f->running = 0;
	if (f->paced)
		arm_timer(f, 0);
	return 0;
}

static int fussy_prepare(snd_pcm_ioplug_t *io)
{
	fussy_t *f = io->private_data;
	snd_pcm_sw_params_t *sw;
	if (unplugged(f))
		return -ENODEV;
	snd_pcm_sw_params_alloca(&sw);
	snd_pcm_sw_params_current(io->pcm, sw);
	snd_pcm_sw_params_get_boundary(sw, &f->boundary);
	f->hw = 0;
	f->running = 0;
	return 0;
}

static snd_pcm_sframes_t fussy_pointer(snd_pcm_ioplug_t *io)
{
	fussy_t *f = io->private_data;
	if (unplugged(f) || !f->running)
		return f->hw;
	if (!f->paced) {
		/* Like "null": playback consumes at once, capture always has a full buffer. */
		if (io->stream == SND_PCM_STREAM_PLAYBACK)
			f->hw = io->appl_ptr;
		else
			f->hw = (io->appl_ptr + io->buffer_size) % f->boundary;
		return f->hw;
	}
	uint64_t clock = elapsed_frames(f);
	if (io->stream == SND_PCM_STREAM_PLAYBACK) {
		/* The card plays on; once it has played everything written it underruns. */
		uint64_t written = distance(f, io->appl_ptr, f->start_hw);
		if (clock >= written)
			return -EPIPE;
	} else {
		/* The card records on; unread frames beyond the buffer are an overrun. */
		uint64_t read = distance(f, io->appl_ptr, f->start_appl);
		if (clock > read + io->buffer_size)
			return -EPIPE;
	}
	f->hw = (f->start_hw + clock) % f->boundary;
	return f->hw;
}

static snd_pcm_sframes_t fussy_transfer(snd_pcm_ioplug_t *io, const snd_pcm_channel_area_t *areas,
					snd_pcm_uframes_t offset, snd_pcm_uframes_t size)
{
	fussy_t *f = io->private_data;
	if (unplugged(f))
		return -ENODEV;
	/* Capture delivers silence: the file plugin above replaces it with the input file. */
	if (io->stream == SND_PCM_STREAM_CAPTURE)
		snd_pcm_areas_silence(areas, offset, io->channels, size, io->format);
	return size;
}

static int fussy_poll_revents(snd_pcm_ioplug_t *io, struct pollfd *pfd, unsigned int nfds,
			      unsigned short *revents)
{
	fussy_t *f = io->private_data;
	unsigned short ready = io->stream == SND_PCM_STREAM_PLAYBACK ? POLLOUT : POLLIN;
	(void)nfds;
	/* A call blocked waiting for the card gets EBADFD when the card goes away or the
	 * stream is stopped under it (the kernel's wait_for_avail does the same); later
	 * calls see the DISCONNECTED state and get ENODEV. */
	if (unplugged(f))
		return -EBADFD;
	if (io->state == SND_PCM_STATE_SETUP || io->state == SND_PCM_STATE_OPEN)
		return -EBADFD;
	if (!f->paced) {
		*revents = ready;
		return 0;
	}
	snd_pcm_sframes_t avail = snd_pcm_avail_update(io->pcm);
	if (avail < 0) {
		*revents = POLLERR;
	} else if ((snd_pcm_uframes_t)avail >= io->period_size) {
		/* Level-triggered, as a kernel PCM's poll: ready while a period is there. The
		 * timer's ticks stay unread, so the next poll() returns at once too; a reader
		 * that slept while periods gathered reads them back to back. */
		*revents = ready;
	} else {
		/* Not ready: these ticks are spent; the next one wakes the waiter. */
		if ((pfd[0].revents & POLLIN)) {
			uint64_t ticks;
			if (read(f->poll_fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
				return -errno;
		}
		*revents = 0;
	}
	return 0;
}

static int fussy_close(snd_pcm_ioplug_t *io)
{
	fussy_t *f = io->private_data;
	if (f->poll_fd >= 0)
		close(f->poll_fd);
	if (f->lock_fd >= 0)
		close(f->lock_fd); /* releases the flock */
	free(f->unplug_file);
	free(f);
	return 0;
}

static const snd_pcm_ioplug_callback_t fussy_callback = {
	.start = fussy_start,
	.stop = fussy_stop,
	.prepare = fussy_prepare,
	.pointer = fussy_pointer,
	.transfer = fussy_transfer,
	.poll_revents = fussy_poll_revents,
	.close = fussy_close,
};

static int set_constraints(fussy_t *f)
{
	static const unsigned int access[] = { SND_PCM_ACCESS_RW_INTERLEAVED };
	static const unsigned int format[] = { SND_PCM_FORMAT_S16_LE };
	snd_pcm_ioplug_t *io = &f->io;
	int err;
	if ((err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_ACCESS, 1, access)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_FORMAT, 1, format)) < 0)
		return err;
	if (f->channels)
		err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_CHANNELS, 1, &f->channels);
	else
		err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_CHANNELS, 1, 32);
	if (err < 0)
		return err;
	if (f->rate)
		err = snd_pcm_ioplug_set_param_list(io, SND_PCM_IOPLUG_HW_RATE, 1, &f->rate);
	else
		err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_RATE, 4000, 192000);
	if (err < 0)
		return err;
	if ((err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_PERIOD_BYTES,
						   f->period_bytes_min, f->period_bytes_max)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_BUFFER_BYTES,
						   f->buffer_bytes_min, f->buffer_bytes_max)) < 0 ||
	    (err = snd_pcm_ioplug_set_param_minmax(io, SND_PCM_IOPLUG_HW_PERIODS, 2, 1024)) < 0)
		return err;
	return 0;
}

static int get_positive(snd_config_t *n, const char *id, unsigned int *out)
{
	long value;
	if (snd_config_get_integer(n, &value) < 0 || value <= 0) {
		SNDERR("edgevoice_fussy: %s must be a positive integer", id);
		return -EINVAL;
	}
	*out = (unsigned int)value;
	return 0;
}

SND_PCM_PLUGIN_DEFINE_FUNC(edgevoice_fussy)
{
	snd_config_iterator_t i, next;
	const char *unplug_file = NULL, *lock_file = NULL;
	unsigned int rate = 0, channels = 0, buffer_bytes_min = 64, buffer_bytes_max = 1 << 22;
	unsigned int period_bytes_min = 32, period_bytes_max = 1 << 20;
	int paced = 0, err;
	fussy_t *f;
	(void)root;

	snd_config_for_each(i, next, conf) {
		snd_config_t *n = snd_config_iterator_entry(i);
		const char *id;
		if (snd_config_get_id(n, &id) < 0)
			continue;
		if (!strcmp(id, "comment") || !strcmp(id, "type") || !strcmp(id, "hint"))
			continue;
		if (!strcmp(id, "rate")) {
			if ((err = get_positive(n, id, &rate)) < 0)
				return err;
		} else if (!strcmp(id, "channels")) {
			if ((err = get_positive(n, id, &channels)) < 0)
				return err;
		} else if (!strcmp(id, "buffer_bytes_min")) {
			if ((err = get_positive(n, id, &buffer_bytes_min)) < 0)
				return err;
		} else if (!strcmp(id, "buffer_bytes_max")) {
			if ((err = get_positive(n, id, &buffer_bytes_max)) < 0)
				return err;
		} else if (!strcmp(id, "period_bytes_min")) {
			if ((err = get_positive(n, id, &period_bytes_min)) < 0)
				return err;
		} else if (!strcmp(id, "period_bytes_max")) {
			if ((err = get_positive(n, id, &period_bytes_max)) < 0)
				return err;
		} else if (!strcmp(id, "paced")) {
			if ((paced = snd_config_get_bool(n)) < 0) {
				SNDERR("edgevoice_fussy: paced must be a boolean");
				return -EINVAL;
			}
		} else if (!strcmp(id, "unplug_file")) {
			if (snd_config_get_string(n, &unplug_file) < 0)
				return -EINVAL;
		} else if (!strcmp(id, "lock_file")) {
			if (snd_config_get_string(n, &lock_file) < 0)
				return -EINVAL;
		} else {
			SNDERR("edgevoice_fussy: unknown field %s", id);
			return -EINVAL;
		}
	}

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->rate = rate;
	f->channels = channels;
	f->buffer_bytes_min = buffer_bytes_min;
	f->buffer_bytes_max = buffer_bytes_max;
	f->period_bytes_min = period_bytes_min;
	f->period_bytes_max = period_bytes_max;
	f->paced = paced;
	f->lock_fd = -1;
	f->poll_fd = -1;
	f->boundary = 1;
	if (unplug_file && !(f->unplug_file = strdup(unplug_file))) {
		err = -ENOMEM;
		goto fail;
	}
	if (lock_file) {
		f->lock_fd = open(lock_file, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (f->lock_fd < 0) {
			err = -errno;
			goto fail;
		}
		if (flock(f->lock_fd, LOCK_EX | LOCK_NB) < 0) {
			err = errno == EWOULDBLOCK ? -EBUSY : -errno;
			goto fail;
		}
	}
	if (f->unplug_file && access(f->unplug_file, F_OK) == 0) {
		err = -ENODEV; /* a card that is already gone cannot be opened */
		goto fail;
	}
	f->poll_fd = paced ? timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
			   : eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
	if (f->poll_fd < 0) {
		err = -errno;
		goto fail;
	}

	f->io.version = SND_PCM_IOPLUG_VERSION;
	f->io.name = "EdgeVoice simulated fussy card";
	f->io.callback = &fussy_callback;
	f->io.private_data = f;
	f->io.poll_fd = f->poll_fd;
	f->io.poll_events = paced ? POLLIN : (stream == SND_PCM_STREAM_PLAYBACK ? POLLOUT : POLLIN);
	f->io.flags = SND_PCM_IOPLUG_FLAG_BOUNDARY_WA | SND_PCM_IOPLUG_FLAG_MONOTONIC;
	f->io.mmap_rw = 0;

	err = snd_pcm_ioplug_create(&f->io, name, stream, mode);
	if (err < 0)
		goto fail;
	err = set_constraints(f);
	if (err < 0) {
		snd_pcm_ioplug_delete(&f->io); /* calls fussy_close */
		return err;
	}
	*pcmp = f->io.pcm;
	return 0;

fail:
	if (f->poll_fd >= 0)
		close(f->poll_fd);
	if (f->lock_fd >= 0)
		close(f->lock_fd);
	free(f->unplug_file);
	free(f);
	return err;
}

SND_PCM_PLUGIN_SYMBOL(edgevoice_fussy);
