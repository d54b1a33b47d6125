// A stand-in reverse geocoder that answers as Nominatim does
// (`/reverse?lat=&lon=&format=jsonv2`), so the tests need no internet. It
// names every position the same street, and records what it was asked.

import { createServer } from 'node:http';

export async function startGeocoder() {
  const asked = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    asked.push(url.search);
    if (url.pathname !== '/reverse' || url.searchParams.get('format') !== 'jsonv2') {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end('{"error":"Bad request"}');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      place_id: 1,
      lat: url.searchParams.get('lat'),
      lon: url.searchParams.get('lon'),
      display_name: '12, Fleminggatan, Kungsholmen, Stockholm, 112 26, Sverige',
      address: {
        house_number: '12', road: 'Fleminggatan', suburb: 'Kungsholmen', city: 'Stockholm',
        postcode: '112 26', country: 'Sverige', country_code: 'se',
      },
    }));
  });
  await new Promise((done) => server.listen(0, '127.0.0.1', done));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    asked,
    close: () => new Promise((done) => server.close(done)),
  };
}
